"""Who may talk to the server: loopback clients, and others only with the service token.

The server is not the public entry point: the gateway (``noetl gateway start``) authenticates
users and forwards their requests with ``Authorization: Bearer <service token>`` and the caller's
name in ``X-NoETL-Principal``. This middleware lets a request through when

* it carries the service token (``NOETL_SERVICE_TOKEN``), compared in constant time; or
* it comes from a loopback address and ``require_token`` is off (the default, so a server and its
  workers on one machine need no setup).

Everything else gets 401 before any handler runs; ``/health`` stays open for probes. A wrong token
is refused even from loopback. Handlers read who asked with :func:`principal`: the gateway's
``X-NoETL-Principal`` when the request was trusted, else ``local``/``service``.
"""

from __future__ import annotations

import hmac
import ipaddress

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from noetl.server import problems

OPEN_PATHS = frozenset({"/health", "/ui", "/ui/", "/ui/config.json"})
OPEN_PREFIXES = ("/ui/assets/",)
"""The web UI's files (no data in them; the API calls they make are checked as any other)."""
PRINCIPAL_HEADER = "x-noetl-principal"


class ServiceAuth:
    """ASGI middleware enforcing the rules of the module docstring."""

    def __init__(self, app: ASGIApp, token: str | None, require_token: bool) -> None:
        self.app = app
        self.token = token.encode("utf-8") if token else None
        self.require_token = require_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            response = problems.problem(401, refusal, "unauthenticated")
            response.headers["WWW-Authenticate"] = 'Bearer realm="noetl"'
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> str | None:
        """None when the request may pass, else the reason it may not."""
        presented = _bearer(scope)
        if presented is not None and self.token is not None:
            if hmac.compare_digest(presented, self.token):
                scope.setdefault("state", {})["noetl_trusted"] = "service"
                return None
            return "the bearer token is not this server's service token"
        if not self.require_token and _loopback(scope):
            scope.setdefault("state", {})["noetl_trusted"] = "local"
            return None
        if self.token is None:
            return (
                "this server serves loopback clients only; configure NOETL_SERVICE_TOKEN and send it "
                "as 'Authorization: Bearer <token>', or go through the gateway"
            )
        return "the server requires its service token ('Authorization: Bearer <token>')"


def principal(request: Request) -> str:
    """Who the request is for: the gateway's principal header on a trusted request, else how it
    was trusted (``service`` or ``local``)."""
    trusted = str(request.scope.get("state", {}).get("noetl_trusted", "local"))
    forwarded = request.headers.get(PRINCIPAL_HEADER)
    return forwarded[:200] if forwarded else trusted


def _bearer(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            kind, _, credentials = bytes(value).partition(b" ")
            if kind.lower() == b"bearer" and credentials.strip():
                return credentials.strip()
            return b""
    return None


def _loopback(scope: Scope) -> bool:
    client = scope.get("client")
    if not client:
        return False  # in-process test transports give a client; a missing one is not trusted
    host = str(client[0])
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
