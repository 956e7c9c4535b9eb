"""The web UI through the gateway: its files at ``/ui``, and sign-in sessions.

Signing in (``POST /ui/session`` with ``{"credential": "<API key or JWT>"}``) authenticates the
credential exactly as an ``Authorization`` header would be, then sets a session cookie:
``noetl_session`` - a random 256-bit id, ``HttpOnly``, ``SameSite=Strict``, ``Path=/``, and ``Secure``
when the request came over TLS (directly or as ``X-Forwarded-Proto: https``). The answer carries
the session's CSRF token, which the page sends as ``X-CSRF-Token`` on every request that is not a
GET: a request with the cookie and without the matching token is refused (403), as is one whose
``Origin`` is another site. ``DELETE /ui/session`` signs out.

The gateway keeps sessions in its memory (lost on restart: the user signs in again; with several
gateway replicas, route a user to one of them) and never sends the credential back. Each request
of a session is authenticated again with the stored credential, so a revoked key or an expired
JWT ends the session at once, and it is authorized by the same role and path rules as any API
call. Sessions expire after ``SESSION_SECONDS`` without use and after ``MAX_SESSION_SECONDS`` in all.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from noetl.gateway.policy import Principal
from noetl.server.ui import ASSETS, SECURITY_HEADERS

COOKIE: Final = "noetl_session"
CSRF_HEADER: Final = "x-csrf-token"
SESSION_SECONDS: Final = 8 * 3600.0
MAX_SESSION_SECONDS: Final = 24 * 3600.0
MAX_SESSIONS: Final = 10_000
MAX_CREDENTIAL_CHARS: Final = 16_384
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class Session:
    credential: str
    csrf: str
    created: float
    used: float = field(default=0.0)


class SessionRefused(Exception):
    """A session request that must be refused (status, reason, code)."""

    def __init__(self, status: int, reason: str, code: str) -> None:
        super().__init__(reason)
        self.status, self.reason, self.code = status, reason, code


class Sessions:
    """Sign-in sessions by the SHA-256 of their id (the id itself lives only in the cookie)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._by_digest: OrderedDict[bytes, Session] = OrderedDict()

    def create(self, credential: str) -> tuple[str, Session]:
        session_id = secrets.token_urlsafe(32)
        now = self._clock()
        session = Session(credential, secrets.token_urlsafe(32), now, now)
        self._by_digest[_digest(session_id)] = session
        while len(self._by_digest) > MAX_SESSIONS:
            self._by_digest.popitem(last=False)
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        digest = _digest(session_id)
        session = self._by_digest.get(digest)
        if session is None:
            return None
        now = self._clock()
        if now - session.used > SESSION_SECONDS or now - session.created > MAX_SESSION_SECONDS:
            del self._by_digest[digest]
            return None
        session.used = now
        self._by_digest.move_to_end(digest)
        return session

    def drop(self, session_id: str | None) -> None:
        if session_id:
            self._by_digest.pop(_digest(session_id), None)


def _digest(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode("utf-8")).digest()


def session_of(request: Request, sessions: Sessions) -> Session | None:
    """The request's session when it has no ``Authorization`` header and a live session cookie."""
    if request.headers.get("authorization"):
        return None
    return sessions.get(request.cookies.get(COOKIE))


def check_action(request: Request, session: Session) -> None:
    """CSRF: a state-changing request of a session must carry its token and come from this site."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host", ""):
        raise SessionRefused(403, f"cross-site request from {origin!r} refused", "csrf")
    if request.method.upper() in SAFE_METHODS:
        return
    token = request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(token.encode("utf-8"), session.csrf.encode("utf-8")):
        raise SessionRefused(403, "missing or wrong CSRF token (X-CSRF-Token) for this session", "csrf")


def credential_headers(session: Session) -> Mapping[str, str]:
    """Headers that authenticate as the session's credential."""
    return {"authorization": f"Bearer {session.credential}"}


def tls(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def signed_in(principal: Principal, session: Session) -> dict[str, object]:
    return {
        "principal": principal.name,
        "role": principal.role,
        "paths": list(principal.paths),
        "via": principal.via,
        "csrf": session.csrf,
    }


def set_cookie(response: Response, request: Request, session_id: str) -> None:
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=int(MAX_SESSION_SECONDS),
        path="/",
        httponly=True,
        secure=tls(request),
        samesite="strict",
    )


def clear_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, secure=tls(request), samesite="strict")


def credential_from(body: object) -> str:
    credential = body.get("credential") if isinstance(body, dict) else None
    if not isinstance(credential, str) or not credential.strip():
        raise SessionRefused(400, "sign in with {'credential': '<API key or JWT>'}", "invalid_request")
    if len(credential) > MAX_CREDENTIAL_CHARS:
        raise SessionRefused(400, "the credential is too long", "invalid_request")
    return credential.strip()


# ---- the UI's files -----------------------------------------------------------------------------


async def index(request: Request) -> Response:
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}
    return FileResponse(ASSETS / "index.html", headers=headers)


async def root(request: Request) -> Response:
    return RedirectResponse("/ui/", status_code=307)


async def config(request: Request) -> Response:
    return JSONResponse({"api": "/noetl", "mode": "gateway"}, headers=SECURITY_HEADERS)


def file_routes() -> list[BaseRoute]:
    return [
        Route("/ui", root, methods=["GET"]),
        Route("/ui/", index, methods=["GET"]),
        Route("/ui/config.json", config, methods=["GET"]),
        Mount("/ui/assets", app=StaticFiles(directory=ASSETS), name="ui-assets"),
    ]
