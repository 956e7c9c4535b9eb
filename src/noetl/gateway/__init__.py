"""The gateway: NoETL's public HTTP entry point (``noetl gateway start``).

It authenticates every request (API keys, JWTs), authorizes it by role and catalog path, limits its
rate, writes the decision to the audit trail and forwards it to the orchestrator server
(``/noetl/{path}`` -> ``/api/{path}``) with the service token. It talks to the server over HTTP only,
and to the store for API keys and the audit trail.
"""
