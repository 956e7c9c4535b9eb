"""Who is asking: API keys (looked up hashed in the store) and JWTs (HS256 or a JWKS provider).

``Authorization: Bearer <credential>``: a credential starting with ``noetl_`` is an API key, anything
else is read as a JWT. JWTs must be signed with an allowed algorithm - HS256 with the configured
secret, RS256 or ES256 with a key from the identity provider's JWKS (fetched on first use, fetched
again when a token names a key id not seen yet - at most once per ``jwks_refetch_seconds``, so
tokens with made-up key ids cannot make the gateway hammer the provider) - and must carry ``exp``;
``aud`` and ``iss`` are checked when configured. The role comes from the ``role`` (or
``noetl_role``) claim, the catalog path patterns from ``paths`` (no claim, or an empty list: no
paths at all - nothing is allowed by omission), the name from ``sub``. API keys are looked up
hashed and remembered for ``key_cache_seconds``: known ones in a map, unknown ones in a bounded
least-recently-used set (``negative_cache_size``). Every failure is :class:`Unauthenticated` with
a reason that says what was wrong, never which part of a secret was.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import jwt
from psycopg_pool import AsyncConnectionPool

from noetl.gateway.policy import RANKS, Principal
from noetl.gateway.settings import GatewaySettings
from noetl.store import auth

ASYMMETRIC = ("RS256", "ES256")


class Unauthenticated(Exception):
    """The request carries no usable credential (answered with 401)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Authenticator:
    def __init__(self, settings: GatewaySettings, pool: AsyncConnectionPool[Any]) -> None:
        self._settings = settings
        self._pool = pool
        self._keys: dict[bytes, tuple[Principal, float]] = {}
        self._unknown: OrderedDict[bytes, float] = OrderedDict()
        self._jwks: jwt.PyJWKSet | None = None
        self._jwks_fetched_at: float | None = None
        self.jwks_fetches = 0

    async def principal(self, headers: Mapping[str, str]) -> Principal:
        header = headers.get("authorization", "")
        kind, _, credential = header.partition(" ")
        credential = credential.strip()
        if not header:
            raise Unauthenticated("no credentials: send 'Authorization: Bearer <API key or JWT>'")
        if kind.lower() != "bearer" or not credential:
            raise Unauthenticated("the Authorization header must be 'Bearer <API key or JWT>'")
        if credential.startswith(auth.KEY_PREFIX):
            return await self._api_key(credential)
        return await self._jwt(credential)

    async def _api_key(self, key: str) -> Principal:
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        now = time.monotonic()
        known = self._keys.get(digest)
        if known is not None and now < known[1]:
            return known[0]
        unknown_until = self._unknown.get(digest)
        if unknown_until is not None and now < unknown_until:
            self._unknown.move_to_end(digest)
            raise Unauthenticated("the API key is unknown, revoked or expired")
        async with self._pool.connection() as conn:
            record = await auth.find_key(conn, key)
        until = now + self._settings.key_cache_seconds
        if record is None:
            self._keys.pop(digest, None)
            self._remember_unknown(digest, until)
            raise Unauthenticated("the API key is unknown, revoked or expired")
        self._unknown.pop(digest, None)
        found = Principal(f"key:{record['name']}", record["role"], tuple(record["paths"]), "api_key")
        self._keys[digest] = (found, until)
        return found

    def _remember_unknown(self, digest: bytes, until: float) -> None:
        self._unknown[digest] = until
        self._unknown.move_to_end(digest)
        while len(self._unknown) > self._settings.negative_cache_size:
            self._unknown.popitem(last=False)

    @property
    def unknown_keys_cached(self) -> int:
        return len(self._unknown)

    async def _jwt(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("the bearer token is neither an API key nor a well-formed JWT") from None
        algorithm = header.get("alg")
        key = await self._key_for(algorithm, header.get("kid"))
        settings = self._settings
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[str(algorithm)],
                audience=settings.jwt_audience,
                issuer=settings.jwt_issuer,
                options={"require": ["exp", "sub"], "verify_aud": settings.jwt_audience is not None},
                leeway=5,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the JWT has expired") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("the JWT's signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"the JWT is not acceptable: {exc}") from None
        return _principal(claims)

    async def _key_for(self, algorithm: object, kid: object) -> Any:
        if algorithm == "HS256":
            if not self._settings.jwt_secret:
                raise Unauthenticated("HS256 tokens are not accepted here (no NOETL_GATEWAY_JWT_SECRET)")
            return self._settings.jwt_secret
        if algorithm not in ASYMMETRIC:
            raise Unauthenticated(f"JWT algorithm {algorithm!r} is not accepted (HS256, RS256, ES256)")
        if not self._settings.jwks_url:
            raise Unauthenticated(f"{algorithm} tokens are not accepted here (no NOETL_GATEWAY_JWKS_URL)")
        found = self._jwk(kid)
        if found is None and self._may_refetch():
            await self._fetch_jwks()
            found = self._jwk(kid)
        if found is None:
            raise Unauthenticated(f"the JWT's key id {kid!r} is not in the identity provider's JWKS")
        if found.algorithm_name not in (algorithm, None) and found.key_type != _family(str(algorithm)):
            raise Unauthenticated("the JWT's algorithm does not match its key")
        return found.key

    def _may_refetch(self) -> bool:
        """The JWKS is fetched on first use, then again only once per ``jwks_refetch_seconds``."""
        last = self._jwks_fetched_at
        return last is None or time.monotonic() - last >= self._settings.jwks_refetch_seconds

    def _jwk(self, kid: object) -> jwt.PyJWK | None:
        if self._jwks is None:
            return None
        for key in self._jwks.keys:
            if kid is None or key.key_id == kid:
                return key
        return None

    async def _fetch_jwks(self) -> None:
        import httpx

        assert self._settings.jwks_url is not None
        self._jwks_fetched_at = time.monotonic()
        self.jwks_fetches += 1
        try:
            async with httpx.AsyncClient(timeout=10.0) as client:
                response = await client.get(self._settings.jwks_url)
                response.raise_for_status()
                self._jwks = jwt.PyJWKSet.from_dict(response.json())
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
            raise Unauthenticated(
                f"cannot read the identity provider's keys ({type(exc).__name__})"
            ) from None


def _family(algorithm: str) -> str:
    return "RSA" if algorithm.startswith("RS") else "EC"


def _principal(claims: Mapping[str, Any]) -> Principal:
    role = claims.get("role") or claims.get("noetl_role")
    if not isinstance(role, str) or role not in RANKS:
        raise Unauthenticated(f"the JWT's 'role' claim must be one of {', '.join(RANKS)}")
    paths = claims.get("paths", [])  # no claim: no paths (deny), never everything
    if isinstance(paths, str):
        paths = [paths]
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise Unauthenticated("the JWT's 'paths' claim must be a list of path patterns")
    return Principal(f"jwt:{claims['sub']}", role, tuple(p for p in paths if p), "jwt")
