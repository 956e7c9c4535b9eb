"""The gateway application: authenticate, authorize, limit, audit, forward (see the package doc).

One route does the work: ``/noetl/{path}`` with any method. In order, a request is

1. put in canonical form (:mod:`noetl.gateway.canonical`): its path decoded once from the raw
   request target, ``..``, encoded slashes and dots, empty parts and trailing slashes refused,
   checked flags and paging values parsed - else 400;
2. checked against its client address's pre-authentication limit - else 429 with ``Retry-After``
   (only failed authentications spend it; the client address is the peer, or what a trusted
   proxy's ``X-Forwarded-For`` says, :mod:`noetl.gateway.clients`);
3. authenticated (:mod:`noetl.gateway.identity`) - else 401;
4. counted against its principal's rate limit (:mod:`noetl.gateway.ratelimit`) - else 429;
5. read, up to ``max_body_bytes`` - else 413; a JSON body nested deeper than ``max_json_depth``
   or not JSON - 400;
6. classified by the route table (:mod:`noetl.gateway.policy`: a route it does not name is
   refused) and authorized by role and catalog path - else 403; the playbook path comes from what
   the request is about, looked up once (:mod:`noetl.gateway.lookup`);
7. recorded in the audit trail (allowed or denied, with the reason) and
8. forwarded as exactly the canonical request that was authorized - its re-encoded path and query,
   the body naming the resolved catalog entry - to ``/api/{path}`` on the server with the service
   token and the principal (``X-NoETL-Principal``, ``-Role``, ``-Paths``), the answer streamed back
   as it arrives (event follows stay live). List answers are filtered to the principal's paths
   when those are not ``*``.

Answers the gateway makes itself use the server's problem shape ``{"detail": {"reason", "code"}}``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from noetl import __version__
from noetl.gateway import canonical, clients, lookup, policy, ui
from noetl.gateway.identity import Authenticator, Unauthenticated
from noetl.gateway.lookup import Refused
from noetl.gateway.ratelimit import RateLimiter
from noetl.gateway.settings import GatewaySettings
from noetl.store import auth, db

log = logging.getLogger("noetl.gateway")

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
FORWARDED_HEADERS = ("content-type", "accept", "last-event-id", "x-request-id", "traceparent", "tracestate")
HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "upgrade", "content-length"})


@dataclass
class Gateway:
    settings: GatewaySettings
    pool: AsyncConnectionPool[Any]
    http: httpx.AsyncClient
    authenticator: Authenticator
    limiter: RateLimiter
    preauth: RateLimiter
    proxies: tuple[clients.Network, ...] = ()
    refusals: RateLimiter = field(default_factory=lambda: RateLimiter(0.1, 1))
    """One audited pre-authentication 429 per address every ten seconds; the rest only counted."""
    _token: str | None = None

    def service_token(self) -> str | None:
        """The configured service token, else the one the server on this machine created."""
        if self._token is None:
            self._token = self.settings.service_token or _token_file(self.settings)
        return self._token


def _token_file(settings: GatewaySettings) -> str | None:
    from urllib.parse import urlsplit

    from noetl.store import servicetoken

    host = urlsplit(settings.server_url).hostname or ""
    if settings.service_token_file is None or host not in ("127.0.0.1", "localhost", "::1"):
        return None
    return servicetoken.read(settings.service_token_file.parent)


def create_app(settings: GatewaySettings) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = await db.pool(settings.database_url, 1, 4)
        timeout = httpx.Timeout(settings.timeout_seconds, read=None)  # event follows stay open
        http = httpx.AsyncClient(base_url=settings.server_url.rstrip("/"), timeout=timeout)
        limiter = RateLimiter(settings.rate_per_second, settings.burst)
        preauth = RateLimiter(settings.preauth_rate, settings.preauth_burst)
        proxies = clients.networks(settings.trusted_proxies)
        authenticator = Authenticator(settings, pool)
        app.state.gateway = Gateway(settings, pool, http, authenticator, limiter, preauth, proxies)
        app.state.ui_sessions = ui.Sessions()
        try:
            yield
        finally:
            await http.aclose()
            await pool.close()

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/noetl/{path:path}", forward, methods=METHODS),
        Route("/ui/session", ui_session, methods=["GET", "POST", "DELETE"]),
        *ui.file_routes(),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok", "service": "gateway", "version": __version__})


PREFIX = b"/noetl/"


@dataclass
class Exchange:
    """One request on its way through: what is known about it so far (for the audit trail)."""

    request: Request
    client: str
    target: canonical.Target | None = None
    principal: policy.Principal | None = None
    action: policy.Action = policy.DENIED
    execution_id: str | None = None


async def forward(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    peer = request.client.host if request.client else None
    exchange = Exchange(
        request, clients.address(peer, request.headers.get("x-forwarded-for"), gateway.proxies)
    )
    try:
        subject = await _decide(gateway, exchange)
    except Refused as refused:
        if refused.status != 429 or exchange.principal is not None or _first_refusal(gateway, exchange):
            await _audit(gateway, exchange, "denied", refused.reason, refused.status)
        return problem(refused.status, refused.reason, refused.code, refused.headers)
    await _audit(gateway, exchange, "allowed", None, None)
    assert exchange.target is not None
    return await _proxy(gateway, exchange, exchange.target, subject.body)


async def _decide(gateway: Gateway, exchange: Exchange) -> lookup.Subject:
    """Everything before forwarding; Refused when the request is not to be forwarded."""
    request = exchange.request
    try:
        exchange.target = target = canonical.target(
            request.scope.get("raw_path") or request.url.path.encode(), PREFIX, request.scope["query_string"]
        )
    except canonical.NotCanonical as exc:
        raise Refused(400, exc.reason, "not_canonical") from None
    exchange.action = action = policy.classify(request.method, target.path, target.flag("include_data"))
    exchange.principal = principal = await _authenticate(gateway, exchange)
    _limit(gateway, principal)
    body = await _body(request, gateway.settings.max_body_bytes)
    if body and action.lookup is None:
        lookup.check_depth(body, gateway.settings.max_json_depth)
    if action.kind == "denied":
        raise Refused(403, f"the gateway does not expose {request.method} /noetl/{target.path}", "forbidden")

    async def server(method: str, path: str, payload: dict[str, Any] | None) -> dict[str, Any] | None:
        return await _server_json(gateway, method, path, payload)

    subject = await lookup.subject(action, target, body, principal, server)
    exchange.execution_id = subject.execution_id
    reason = policy.decide(principal, action, subject.path)
    if reason is not None:
        raise Refused(403, reason, "forbidden")
    return subject


async def _authenticate(gateway: Gateway, exchange: Exchange) -> policy.Principal:
    wait = gateway.preauth.waiting(exchange.client)
    if wait:
        raise Refused(
            429,
            f"too many failed authentications from {exchange.client}; retry in {wait} s",
            "rate_limited",
            {"Retry-After": str(wait)},
        )
    headers: Mapping[str, str] = exchange.request.headers
    session = ui.session_of(exchange.request, exchange.request.app.state.ui_sessions)
    if session is not None:  # a UI session: its credential, and the CSRF checks on actions
        try:
            ui.check_action(exchange.request, session)
        except ui.SessionRefused as refused:
            raise Refused(refused.status, refused.reason, refused.code) from None
        headers = ui.credential_headers(session)
    try:
        return await gateway.authenticator.principal(headers)
    except Unauthenticated as exc:
        gateway.preauth.take(exchange.client)
        raise Refused(
            401, exc.reason, "unauthenticated", {"WWW-Authenticate": 'Bearer realm="noetl"'}
        ) from None


def _first_refusal(gateway: Gateway, exchange: Exchange) -> bool:
    """Whether a pre-authentication 429 is the first of its streak (only that one is audited, so a
    flood costs no audit rows): true once per ``Retry-After`` window and address."""
    return gateway.refusals.take(exchange.client) == 0


def _limit(gateway: Gateway, principal: policy.Principal) -> None:
    wait = gateway.limiter.take(principal.name)
    if wait:
        raise Refused(
            429, f"rate limit exceeded for '{principal.name}'", "rate_limited", {"Retry-After": str(wait)}
        )


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Refused(413, f"request body larger than {limit} bytes", "http_413")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"request body larger than {limit} bytes", "http_413")
        chunks.append(chunk)
    return b"".join(chunks)


async def _server_json(
    gateway: Gateway, method: str, path: str, body: dict[str, Any] | None
) -> dict[str, Any] | None:
    headers = _service({}, gateway.service_token())
    response = await _send(gateway, gateway.http.build_request(method, path, json=body, headers=headers))
    try:
        if response.status_code == 404:
            return None
        await response.aread()
        if response.is_error:
            raise Refused(
                502, f"the server answered {response.status_code} to {method} {path}", "bad_gateway"
            )
        found = response.json()
        return found if isinstance(found, dict) else None
    finally:
        await response.aclose()


async def _proxy(gateway: Gateway, exchange: Exchange, target: canonical.Target, body: bytes) -> Response:
    request, principal, action = exchange.request, exchange.principal, exchange.action
    headers = {k: v for k, v in request.headers.items() if k in FORWARDED_HEADERS}
    if principal is not None:
        headers.update(_principal_headers(principal))
    if body and action.lookup in ("entry", "register"):
        headers["content-type"] = "application/json"
    upstream = gateway.http.build_request(
        request.method,
        httpx.URL(gateway.settings.server_url.rstrip("/") + "/api/" + target.encoded),
        params=target.query_string,
        content=body or None,
        headers=_service(headers, gateway.service_token()),
    )
    try:
        response = await _send(gateway, upstream)
    except Refused as refused:
        return problem(refused.status, refused.reason, refused.code)
    passed = {k: v for k, v in response.headers.items() if k.lower() not in HOP_HEADERS}
    passed.pop("location", None)  # a redirect would name the server's internal address
    if action.filter_list and principal is not None and "*" not in principal.paths and not response.is_error:
        await response.aread()
        await response.aclose()
        passed.pop("content-encoding", None)
        visible = _filtered(response.json(), principal.paths)
        if visible is None:
            return problem(403, f"this entry is outside the paths allowed to '{principal.name}'", "forbidden")
        return JSONResponse(visible, response.status_code)
    return StreamingResponse(
        response.aiter_raw(), response.status_code, headers=passed, background=BackgroundTask(response.aclose)
    )


def _principal_headers(principal: policy.Principal) -> dict[str, str]:
    """Who the server is to act for: name, role and path patterns (the server records them in the
    executions this principal starts, and checks sub-playbooks against them)."""
    return {
        "x-noetl-principal": principal.name,
        "x-noetl-role": principal.role,
        "x-noetl-paths": json.dumps(list(principal.paths)),
    }


WORKER_FIELDS = ("name", "pools", "status", "capacity", "heartbeat_age")
"""What a principal limited to some paths sees of a worker: no host, process or metadata."""


def _filtered(body: object, patterns: tuple[str, ...]) -> object | None:
    """List answers keep only entries whose ``path`` the principal may see; a single entry it may
    not see gives None. Workers have no path: they are listed without their host details."""
    if isinstance(body, dict):
        for key in ("executions", "entries", "children", "schedules", "triggers"):
            items = body.get(key)
            if isinstance(items, list):
                body[key] = [
                    item
                    for item in items
                    if isinstance(item, dict) and policy.path_allowed(patterns, item.get("path"))
                ]
        workers = body.get("workers")
        if isinstance(workers, list):
            body["workers"] = [{k: w.get(k) for k in WORKER_FIELDS} for w in workers if isinstance(w, dict)]
        if "path" in body and not policy.path_allowed(patterns, body.get("path")):
            return None
    return body


async def _send(gateway: Gateway, upstream: httpx.Request) -> httpx.Response:
    try:
        return await gateway.http.send(upstream, stream=True)
    except httpx.HTTPError as exc:
        log.warning("cannot reach the server at %s: %s", gateway.settings.server_url, type(exc).__name__)
        raise Refused(
            502, f"the gateway cannot reach the NoETL server ({type(exc).__name__})", "bad_gateway"
        ) from None


def _service(headers: dict[str, str], token: str | None = None) -> dict[str, str]:
    return {**headers, "authorization": f"Bearer {token}"} if token else headers


async def _audit(
    gateway: Gateway, exchange: Exchange, decision: str, reason: str | None, status: int | None
) -> None:
    request, principal, action = exchange.request, exchange.principal, exchange.action
    path = "/noetl/" + exchange.target.path if exchange.target is not None else request.url.path
    detail: dict[str, Any] = {"method": request.method, "path": path, "client": exchange.client}
    if reason:
        detail["reason"] = reason
    if status:
        detail["status"] = status
    peer = request.client.host if request.client else None
    if peer != exchange.client:
        detail["peer"] = peer
    actor = principal.name if principal is not None else "anonymous"
    execution_id = exchange.execution_id or action.execution_id
    execution = int(execution_id) if execution_id and execution_id.isdigit() else None
    try:
        async with gateway.pool.connection() as conn:
            await auth.record(conn, actor, f"gateway.{action.kind}", decision, path[:1000], execution, detail)
    except Exception:  # the audit store being down must not hide the answer; it is logged
        log.exception("could not write the audit event for %s %s", request.method, path)


async def ui_session(request: Request) -> Response:
    """Sign in (POST), who is signed in (GET), sign out (DELETE): see :mod:`noetl.gateway.ui`."""
    gateway: Gateway = request.app.state.gateway
    sessions: ui.Sessions = request.app.state.ui_sessions
    peer = request.client.host if request.client else None
    exchange = Exchange(
        request, clients.address(peer, request.headers.get("x-forwarded-for"), gateway.proxies)
    )
    exchange.action = policy.Action("session")
    try:
        if request.method == "POST":
            credential = ui.credential_from(_ui_json(await _body(request, 65536)))
            exchange.principal = principal = await _as(gateway, exchange, credential)
            session_id, session = sessions.create(credential)
            await _audit(gateway, exchange, "allowed", "signed in to the UI", None)
            response = JSONResponse(ui.signed_in(principal, session))
            ui.set_cookie(response, request, session_id)
            return response
        current = sessions.get(request.cookies.get(ui.COOKIE))
        if current is None:
            raise Refused(401, "not signed in (or the session expired)", "unauthenticated")
        if request.method == "DELETE":
            ui.check_action(request, current)
            sessions.drop(request.cookies.get(ui.COOKIE))
            response = JSONResponse({"signed_out": True})
            ui.clear_cookie(response, request)
            return response
        exchange.principal = principal = await _as(gateway, exchange, current.credential)
        return JSONResponse(ui.signed_in(principal, current))
    except ui.SessionRefused as refused:
        await _audit(gateway, exchange, "denied", refused.reason, refused.status)
        return problem(refused.status, refused.reason, refused.code)
    except Refused as refused:
        await _audit(gateway, exchange, "denied", refused.reason, refused.status)
        return problem(refused.status, refused.reason, refused.code, refused.headers)


async def _as(gateway: Gateway, exchange: Exchange, credential: str) -> policy.Principal:
    """The principal of a credential, under the same pre-authentication limit as the API."""
    wait = gateway.preauth.waiting(exchange.client)
    if wait:
        raise Refused(
            429, f"too many failed sign-ins from {exchange.client}; retry in {wait} s", "rate_limited"
        )
    try:
        return await gateway.authenticator.principal({"authorization": f"Bearer {credential}"})
    except Unauthenticated as exc:
        gateway.preauth.take(exchange.client)
        raise Refused(401, exc.reason, "unauthenticated") from None


def _ui_json(body: bytes) -> object:
    try:
        return json.loads(body or b"{}")
    except ValueError:
        raise Refused(400, "the request body is not JSON", "invalid_request") from None


def problem(status: int, reason: str, code: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": {"reason": reason, "code": code}}, status_code=status, headers=headers)
