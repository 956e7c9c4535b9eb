"""The gateway application: authenticate, authorize, limit, audit, forward (see the package doc).

One route does the work: ``/noetl/{path}`` with any method. In order, a request is

1. authenticated (:mod:`noetl.gateway.identity`) - else 401;
2. counted against its principal's rate limit (:mod:`noetl.gateway.ratelimit`) - else 429 with
   ``Retry-After``;
3. read, up to ``max_body_bytes`` - else 413;
4. classified and authorized by role and catalog path (:mod:`noetl.gateway.policy`) - else 403; the
   playbook path comes from the body (register, execute) or from the server (an execution id, a
   catalog id);
5. recorded in the audit trail (allowed or denied, with the reason) and
6. forwarded to ``/api/{path}`` on the server with the service token and the principal's name,
   the answer streamed back as it arrives (event follows stay live). List answers are filtered to
   the principal's paths when those are not ``*``.

Answers the gateway makes itself use the server's problem shape ``{"detail": {"reason", "code"}}``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import yaml
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from noetl import __version__
from noetl.gateway import policy, ui
from noetl.gateway.identity import Authenticator, Unauthenticated
from noetl.gateway.ratelimit import RateLimiter
from noetl.gateway.settings import GatewaySettings
from noetl.store import auth, db

log = logging.getLogger("noetl.gateway")

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
FORWARDED_HEADERS = ("content-type", "accept", "last-event-id", "x-request-id")
HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "upgrade", "content-length"})


class Refused(Exception):
    """A request the gateway answers itself (status, reason, code, extra headers)."""

    def __init__(self, status: int, reason: str, code: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.code, self.headers = status, reason, code, headers or {}


@dataclass
class Gateway:
    settings: GatewaySettings
    pool: AsyncConnectionPool[Any]
    http: httpx.AsyncClient
    authenticator: Authenticator
    limiter: RateLimiter
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
        app.state.gateway = Gateway(settings, pool, http, Authenticator(settings, pool), limiter)
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


async def forward(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    principal: policy.Principal | None = None
    action = policy.classify(request.method, request.path_params["path"], request.query_params)
    try:
        principal = await _authenticate(gateway, request)
        _limit(gateway, principal)
        body = await _body(request, gateway.settings.max_body_bytes)
        playbook_path = await _playbook_path(gateway, action, body)
        reason = policy.decide(principal, action, playbook_path)
        if reason is not None:
            raise Refused(403, reason, "forbidden")
    except Refused as refused:
        await _audit(gateway, request, principal, action, "denied", refused.reason, refused.status)
        return problem(refused.status, refused.reason, refused.code, refused.headers)
    await _audit(gateway, request, principal, action, "allowed", None, None)
    return await _proxy(gateway, request, principal, action, body)


async def _authenticate(gateway: Gateway, request: Request) -> policy.Principal:
    headers: Mapping[str, str] = request.headers
    session = ui.session_of(request, request.app.state.ui_sessions)
    if session is not None:  # a UI session: its credential, and CSRF checks on actions
        try:
            ui.check_action(request, session)
        except ui.SessionRefused as refused:
            raise Refused(refused.status, refused.reason, refused.code) from None
        headers = ui.credential_headers(session)
    try:
        return await gateway.authenticator.principal(headers)
    except Unauthenticated as exc:
        raise Refused(
            401, exc.reason, "unauthenticated", {"WWW-Authenticate": 'Bearer realm="noetl"'}
        ) from None


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


async def _playbook_path(gateway: Gateway, action: policy.Action, body: bytes) -> str | None:
    """The catalog path the request is about, when its authorization depends on one."""
    if action.lookup == "register":
        return _registered_path(_json(body))
    if action.lookup == "execute":
        request = _json(body)
        if isinstance(request.get("path"), str):
            return str(request["path"])
        if request.get("catalog_id") is not None:
            entry = await _server_json(
                gateway, "POST", "/api/catalog/resource", {"catalog_id": request["catalog_id"]}
            )
            return str(entry.get("path")) if entry else None
        raise Refused(400, "execute needs 'path' or 'catalog_id'", "invalid_request")
    if action.lookup == "execution" and action.execution_id is not None:
        found = await _server_json(gateway, "GET", f"/api/executions/{action.execution_id}", None)
        if found is None:
            raise Refused(404, f"execution {action.execution_id} not found", "not_found")
        return str(found.get("path")) if found.get("path") else None
    return None


def _registered_path(request: dict[str, Any]) -> str:
    content = request.get("content")
    if not isinstance(content, str):
        raise Refused(400, "register needs 'content' (the playbook YAML)", "invalid_request")
    try:
        document = yaml.safe_load(content)
    except yaml.YAMLError:
        raise Refused(400, "the playbook is not valid YAML", "validation") from None
    metadata = document.get("metadata") if isinstance(document, dict) else None
    path = (
        (metadata or {}).get("path") or (metadata or {}).get("name") if isinstance(metadata, dict) else None
    )
    if not isinstance(path, str) or not path:
        raise Refused(400, "the playbook has no metadata.path or metadata.name", "validation")
    if not policy.valid_catalog_path(path):
        raise Refused(
            400, f"catalog path '{path}' must be relative, without '..' or empty parts", "validation"
        )
    return path


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        raise Refused(400, "the request body is not JSON", "invalid_request") from None
    if not isinstance(value, dict):
        raise Refused(400, "the request body must be a JSON object", "invalid_request")
    return value


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


async def _proxy(
    gateway: Gateway, request: Request, principal: policy.Principal | None, action: policy.Action, body: bytes
) -> Response:
    headers = {k: v for k, v in request.headers.items() if k in FORWARDED_HEADERS}
    if principal is not None:
        headers["x-noetl-principal"] = principal.name
    query = policy.scoped_query(action, principal, list(request.query_params.multi_items()))
    upstream = gateway.http.build_request(
        request.method,
        "/api/" + request.path_params["path"],
        params=urlencode(query),
        content=body or None,
        headers=_service(headers, gateway.service_token()),
    )
    try:
        response = await _send(gateway, upstream)
    except Refused as refused:
        return problem(refused.status, refused.reason, refused.code)
    passed = {k: v for k, v in response.headers.items() if k.lower() not in HOP_HEADERS}
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


def _filtered(body: object, patterns: tuple[str, ...]) -> object | None:
    """List answers keep only entries whose ``path`` the principal may see; a single entry it may
    not see gives None."""
    if isinstance(body, dict):
        for key in ("executions", "entries", "children"):
            items = body.get(key)
            if isinstance(items, list):
                body[key] = [
                    item
                    for item in items
                    if isinstance(item, dict) and policy.path_allowed(patterns, item.get("path"))
                ]
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
    gateway: Gateway,
    request: Request,
    principal: policy.Principal | None,
    action: policy.Action,
    decision: str,
    reason: str | None,
    status: int | None,
) -> None:
    detail: dict[str, Any] = {"method": request.method, "path": request.url.path}
    if reason:
        detail["reason"] = reason
    if status:
        detail["status"] = status
    client = request.client.host if request.client else None
    detail["client"] = client
    actor = principal.name if principal is not None else "anonymous"
    execution = int(action.execution_id) if action.execution_id else None
    try:
        async with gateway.pool.connection() as conn:
            await auth.record(
                conn, actor, f"gateway.{action.kind}", decision, request.url.path, execution, detail
            )
    except Exception:  # the audit store being down must not hide the answer; it is logged
        log.exception("could not write the audit event for %s %s", request.method, request.url.path)


async def ui_session(request: Request) -> Response:
    """Sign in (POST), who is signed in (GET), sign out (DELETE): see :mod:`noetl.gateway.ui`."""
    gateway: Gateway = request.app.state.gateway
    sessions: ui.Sessions = request.app.state.ui_sessions
    action = policy.Action("session")
    principal: policy.Principal | None = None
    try:
        if request.method == "POST":
            client = request.client.host if request.client else "unknown"
            _limit(gateway, policy.Principal(f"sign-in:{client}", "viewer"))
            credential = ui.credential_from(_json(await _body(request, 65536)))
            principal = await _as(gateway, {"authorization": f"Bearer {credential}"})
            session_id, session = sessions.create(credential)
            await _audit(gateway, request, principal, action, "allowed", "signed in to the UI", None)
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
        principal = await _as(gateway, ui.credential_headers(current))
        return JSONResponse(ui.signed_in(principal, current))
    except ui.SessionRefused as refused:
        await _audit(gateway, request, principal, action, "denied", refused.reason, refused.status)
        return problem(refused.status, refused.reason, refused.code)
    except Refused as refused:
        await _audit(gateway, request, principal, action, "denied", refused.reason, refused.status)
        return problem(refused.status, refused.reason, refused.code, refused.headers)


async def _as(gateway: Gateway, headers: Mapping[str, str]) -> policy.Principal:
    try:
        return await gateway.authenticator.principal(headers)
    except Unauthenticated as exc:
        raise Refused(401, exc.reason, "unauthenticated") from None


def problem(status: int, reason: str, code: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": {"reason": reason, "code": code}}, status_code=status, headers=headers)
