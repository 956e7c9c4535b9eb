"""OAuth2 client-credentials tokens for the keychain: fetched once, cached, renewed before expiry.

A keychain entry of kind ``oauth2`` names a token ``endpoint`` and the form (``data``) or JSON body
(``json``) to post there, usually ``grant_type: client_credentials`` with a client id and secret
(templates allowed, e.g. from a ``credential`` entry). The answer's ``token_field`` (default
``access_token``) is the token and ``ttl_field`` (default ``expires_in``) its lifetime in seconds.

:class:`TokenCache` keeps tokens in this process by cache key - the keychain scope decides the key:
``local`` one per execution, ``global`` one per playbook, ``shared`` one per execution tree
(REFERENCE §9). A token is renewed once less than :func:`renew_margin` of its life is left, so no
task starts with a token about to expire. Concurrent requests for the same key share one fetch
(single flight): a hundred parallel loop iterations cause one call to the token server.
Tokens are never written to the database or to events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final

from noetl.dsl.model import JSON
from noetl.errors import CredentialError

DEFAULT_TTL_SECONDS: Final = 3600.0
MAX_MARGIN_SECONDS: Final = 60.0
FETCH_TIMEOUT_SECONDS: Final = 30.0


@dataclass(frozen=True, slots=True)
class Token:
    data: dict[str, JSON]
    expires_at: float  # time.monotonic() based


def renew_margin(ttl: float) -> float:
    """Seconds before expiry at which a token counts as stale: a fifth of its life, at most a minute."""
    return min(MAX_MARGIN_SECONDS, ttl / 5)


class TokenCache:
    """Tokens by cache key with single-flight renewal (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens: dict[str, tuple[Token, float]] = {}  # key -> (token, renew at)
        self._inflight: dict[str, asyncio.Future[Token]] = {}
        self.fetches = 0

    async def get(self, key: str, fetch: Callable[[], Awaitable[Token]]) -> Token:
        """The cached token for ``key``, or the result of ``fetch()`` (one fetch at a time per key)."""
        cached = self._tokens.get(key)
        if cached is not None and self._clock() < cached[1]:
            return cached[0]
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Token] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            self.fetches += 1
            token = await fetch()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters get it, nobody else needs to
            raise
        finally:
            self._inflight.pop(key, None)
        ttl = max(0.0, token.expires_at - self._clock())
        self._tokens[key] = (token, token.expires_at - renew_margin(ttl))
        future.set_result(token)
        return token

    def clear(self) -> None:
        self._tokens.clear()


SHARED_CACHE = TokenCache()
"""The process's token cache (a worker serves many executions; ``global`` tokens are shared)."""


async def fetch_token(
    name: str, spec: Mapping[str, JSON], clock: Callable[[], float] = time.monotonic
) -> Token:
    """POST the entry's body to its endpoint and read the token; CredentialError on any failure.

    The message names the entry, the endpoint and the status - never the response body, which may
    echo the client secret.
    """
    import httpx

    endpoint = spec.get("endpoint") or spec.get("url")
    if not isinstance(endpoint, str) or not endpoint:
        raise CredentialError(f"keychain entry '{name}' of kind oauth2 needs 'endpoint' (the token URL)")
    method = str(spec.get("method") or "POST").upper()
    headers = {str(k): str(v) for k, v in _map(spec.get("headers")).items()}
    form = _map(spec.get("data"))
    body = spec.get("json")
    try:
        async with httpx.AsyncClient(timeout=FETCH_TIMEOUT_SECONDS) as client:
            response = await client.request(
                method,
                endpoint,
                headers=headers,
                data={str(k): str(v) for k, v in form.items()} if form and body is None else None,
                json=body if body is not None else None,
            )
    except httpx.HTTPError as exc:
        raise CredentialError(
            f"keychain entry '{name}': token endpoint {endpoint} unreachable ({type(exc).__name__})"
        ) from None
    return _token(name, endpoint, response, spec, clock)


def _token(
    name: str, endpoint: str, response: object, spec: Mapping[str, JSON], clock: Callable[[], float]
) -> Token:
    import httpx

    assert isinstance(response, httpx.Response)
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if response.is_error or not isinstance(payload, dict):
        code = payload.get("error") if isinstance(payload, dict) else None
        said = f" ({str(code)[:80]})" if isinstance(code, str) else ""
        raise CredentialError(
            f"keychain entry '{name}': token endpoint {endpoint} answered {response.status_code}{said}"
        )
    token_field = str(spec.get("token_field") or "access_token")
    if not isinstance(payload.get(token_field), str) or not payload[token_field]:
        raise CredentialError(f"keychain entry '{name}': the token endpoint's answer has no '{token_field}'")
    ttl_raw = payload.get(str(spec.get("ttl_field") or "expires_in"), DEFAULT_TTL_SECONDS)
    try:
        ttl = float(ttl_raw) if not isinstance(ttl_raw, bool) and ttl_raw is not None else DEFAULT_TTL_SECONDS
    except (TypeError, ValueError):
        ttl = DEFAULT_TTL_SECONDS
    data: dict[str, JSON] = dict(payload)
    data["access_token"] = payload[token_field]
    data["token"] = payload[token_field]
    return Token(data, clock() + ttl)


def _map(value: object) -> dict[str, JSON]:
    return dict(value) if isinstance(value, Mapping) else {}
