"""The gateway's settings: one frozen object built from flags and ``NOETL_GATEWAY_*`` variables."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from noetl.errors import UsageError

ENVIRONMENT = {
    "host": "NOETL_GATEWAY_HOST",
    "port": "NOETL_GATEWAY_PORT",
    "server_url": "NOETL_SERVER_URL",
    "database_url": "NOETL_DATABASE_URL",
    "service_token": "NOETL_SERVICE_TOKEN",
    "jwt_secret": "NOETL_GATEWAY_JWT_SECRET",
    "jwks_url": "NOETL_GATEWAY_JWKS_URL",
    "jwt_audience": "NOETL_GATEWAY_JWT_AUDIENCE",
    "jwt_issuer": "NOETL_GATEWAY_JWT_ISSUER",
    "rate_per_second": "NOETL_GATEWAY_RATE",
    "burst": "NOETL_GATEWAY_BURST",
    "max_body_bytes": "NOETL_GATEWAY_MAX_BODY_BYTES",
    "preauth_rate": "NOETL_GATEWAY_PREAUTH_RATE",
    "preauth_burst": "NOETL_GATEWAY_PREAUTH_BURST",
    "trusted_proxies": "NOETL_GATEWAY_TRUSTED_PROXIES",
    "log_level": "NOETL_LOG_LEVEL",
    "log_format": "NOETL_LOG_FORMAT",
}


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """Where the gateway listens and forwards, and how it authenticates.

    ``jwt_secret`` enables HS256 tokens; ``jwks_url`` enables RS256/ES256 tokens signed by an
    external identity provider (keys fetched from that URL and cached). A JWT names its role in the
    ``role`` claim (or ``noetl_role``) and its catalog path patterns in ``paths``. Each principal
    may make ``burst`` requests at once and ``rate_per_second`` on average; beyond that 429.
    """

    database_url: str
    host: str = "127.0.0.1"
    port: int = 8080
    server_url: str = "http://127.0.0.1:8082"
    service_token: str | None = None
    service_token_file: Path | None = None
    """Where the server keeps the token it created (read when ``service_token`` is not set and
    the server is on this machine)."""
    jwt_secret: str | None = None
    jwks_url: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    rate_per_second: float = 20.0
    burst: int = 40
    max_body_bytes: int = 10 * 1024 * 1024
    preauth_rate: float = 5.0
    """Failed authentications a client address may make per second on average (``preauth_burst``
    at once); beyond that every request from the address gets 429 until the bucket refills."""
    preauth_burst: int = 20
    trusted_proxies: str = ""
    """Proxies whose ``X-Forwarded-For`` names the client (addresses or networks, comma-separated)."""
    max_json_depth: int = 64
    """JSON request bodies nested deeper than this get 400."""
    jwks_refetch_seconds: float = 60.0
    """A JWT naming an unknown key id refetches the JWKS at most once per this many seconds."""
    negative_cache_size: int = 10_000
    """Unknown API keys remembered (least recently used dropped first)."""
    timeout_seconds: float = 60.0
    key_cache_seconds: float = 5.0
    log_level: str = "info"
    log_format: str = "text"
    """``text`` or ``json`` (one object a line)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: object) -> GatewaySettings:
        values: dict[str, object] = {}
        for name, var in ENVIRONMENT.items():
            raw = env.get(var)
            if raw:
                values[name] = _convert(name, var, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if not values.get("database_url"):
            raise UsageError("the gateway needs the database (API keys, audit): set NOETL_DATABASE_URL")
        return cls(**values)  # type: ignore[arg-type]


_PARSERS: dict[str, Callable[[str], object]] = {
    "port": int,
    "rate_per_second": float,
    "burst": int,
    "max_body_bytes": int,
    "preauth_rate": float,
    "preauth_burst": int,
}


def _convert(name: str, var: str, raw: str) -> object:
    try:
        return _PARSERS.get(name, str)(raw)
    except ValueError:
        raise UsageError(f"{var} must be a number, got {raw!r}", field=var) from None
