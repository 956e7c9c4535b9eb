"""Who may talk to the server: callers holding the service token, nobody else by default.

The server is not the public entry point: the gateway (``noetl gateway start``) authenticates
users and forwards their requests with ``Authorization: Bearer <service token>`` and the caller's
identity in ``X-NoETL-Principal`` (name), ``X-NoETL-Role`` and ``X-NoETL-Paths`` (the catalog path
patterns, a JSON list). This middleware lets a request through when

* it carries the service token (``NOETL_SERVICE_TOKEN``, else the ``service.token`` the server
  created in its data directory), compared in constant time; or
* the server was started with the development flag ``--insecure-loopback``
  (``NOETL_SERVER_INSECURE_LOOPBACK=true``), the request comes from a loopback address and carries
  no ``Authorization`` header at all.

Everything else gets 401 before any handler runs - loopback callers included, so user code running
on the server's machine cannot call it without the token; ``/health`` stays open for probes. A wrong
token is refused even with the development flag. The principal headers are believed only on a
request that carried the service token: anyone else's are ignored. Handlers read who asked with
:func:`caller`.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from dataclasses import dataclass

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from noetl.server import problems

OPEN_PATHS = frozenset({"/health", "/ui", "/ui/", "/ui/config.json"})
OPEN_PREFIXES = ("/ui/assets/",)
"""The web UI's files (no data in them; the API calls they make are checked as any other)."""
PRINCIPAL_HEADER = "x-noetl-principal"
ROLE_HEADER = "x-noetl-role"
PATHS_HEADER = "x-noetl-paths"
TRUST_KEY = "noetl_trusted"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request is for: the gateway's principal on a service-token request, else the
    service itself (``service``, or ``local`` under ``--insecure-loopback``) with every path."""

    name: str
    role: str = "admin"
    paths: tuple[str, ...] = ("*",)


class ServiceAuth:
    """ASGI middleware enforcing the rules of the module docstring."""

    def __init__(self, app: ASGIApp, token: str | None, insecure_loopback: bool) -> None:
        self.app = app
        self.token = token.encode("utf-8") if token else None
        self.insecure_loopback = insecure_loopback

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
        if presented is not None:
            if self.token is not None and hmac.compare_digest(presented, self.token):
                scope.setdefault("state", {})[TRUST_KEY] = "service"
                return None
            return "the bearer token is not this server's service token"
        if self.insecure_loopback and _loopback(scope):
            scope.setdefault("state", {})[TRUST_KEY] = "local"
            return None
        return (
            "the server requires its service token ('Authorization: Bearer <token>'; NOETL_SERVICE_TOKEN, "
            "or the service.token file in the server's data directory); users go through the gateway"
        )


def caller(request: Request) -> Caller:
    """Who the request is for (see :class:`Caller`)."""
    trusted = str(request.scope.get("state", {}).get(TRUST_KEY, "local"))
    forwarded = request.headers.get(PRINCIPAL_HEADER)
    if trusted != "service" or not forwarded:
        return Caller(trusted)
    role = request.headers.get(ROLE_HEADER) or "viewer"
    return Caller(forwarded[:200], role, _paths(request.headers.get(PATHS_HEADER)))


def _paths(header: str | None) -> tuple[str, ...]:
    """The JSON list of path patterns the gateway sent; nothing (no paths) when absent or bad."""
    try:
        found = json.loads(header or "[]")
    except ValueError:
        return ()
    if not isinstance(found, list):
        return ()
    return tuple(p for p in found if isinstance(p, str) and p)


def recorded(request: Request) -> dict[str, object] | None:
    """What an execution started by this request records as its principal: the gateway's
    principal (name, role, paths), or None for the service itself (unrestricted)."""
    who = caller(request)
    if who.name in ("service", "local"):
        return None
    return {"name": who.name, "role": who.role, "paths": list(who.paths)}


def principal(request: Request) -> str:
    """The name of who the request is for (see :func:`caller`)."""
    return caller(request).name


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
