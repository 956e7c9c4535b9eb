"""Telemetry: the event exporter (ClickHouse), structured logs, metrics and traces.

Below the runtime and above the store (ARCHITECTURE.md): exporters read the store's event log;
the server, the worker and the gateway use what is here, never the other way round.
"""
