"""The server's settings: one frozen object built at the entry point and passed down.

Nothing below the entry point reads ``os.environ``: the CLI builds :class:`ServerSettings` from its
flags (each names its environment variable), or :meth:`ServerSettings.from_env` reads the
``NOETL_`` variables listed in :data:`ENVIRONMENT`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from noetl.dsl import durations
from noetl.errors import UsageError
from noetl.telemetry import traces

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8082
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024

# Setting name -> the environment variable that sets it.
ENVIRONMENT = {
    "host": "NOETL_SERVER_HOST",
    "port": "NOETL_SERVER_PORT",
    "database_url": "NOETL_DATABASE_URL",
    "data_dir": "NOETL_DATA_DIR",
    "encryption_key": "NOETL_ENCRYPTION_KEY",
    "encryption_key_file": "NOETL_ENCRYPTION_KEY_FILE",
    "previous_keys": "NOETL_ENCRYPTION_PREVIOUS_KEYS",
    "service_token": "NOETL_SERVICE_TOKEN",
    "insecure_loopback": "NOETL_SERVER_INSECURE_LOOPBACK",
    "reaper_interval": "NOETL_REAPER_INTERVAL",
    "poll_seconds": "NOETL_ORCHESTRATOR_POLL_SECONDS",
    "pool_max_size": "NOETL_SERVER_POOL_SIZE",
    "pool_timeout": "NOETL_SERVER_POOL_TIMEOUT",
    "max_body_bytes": "NOETL_SERVER_MAX_BODY_BYTES",
    "log_level": "NOETL_LOG_LEVEL",
    "inline_results": "NOETL_INLINE_RESULTS",
    "max_queue_depth": "NOETL_MAX_QUEUE_DEPTH",
    "queue_depth_by_pool": "NOETL_MAX_QUEUE_DEPTH_BY_POOL",
    "retry_after_seconds": "NOETL_RETRY_AFTER_SECONDS",
    "scheduler_tick": "NOETL_SCHEDULER_TICK",
    "priority_aging_seconds": "NOETL_PRIORITY_AGING_SECONDS",
    "pools_by_kind": "NOETL_POOLS_BY_KIND",
    "log_format": "NOETL_LOG_FORMAT",
    "export_clickhouse_url": "NOETL_EXPORT_CLICKHOUSE_URL",
    "export_clickhouse_database": "NOETL_EXPORT_CLICKHOUSE_DATABASE",
    "export_batch": "NOETL_EXPORT_BATCH",
    "export_interval": "NOETL_EXPORT_INTERVAL",
    "retention_seconds": "NOETL_RETENTION",
}


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Everything the server process needs to know.

    ``database_url`` None means the embedded PostgreSQL under ``data_dir`` (or the user's data
    directory). ``encryption_key`` is the base64 of a 32-byte key for stored credentials; without
    it the key is read from ``encryption_key_file``, else from ``credentials.key`` in the data
    directory (created on first use); ``previous_keys`` are older keys still accepted for reading
    while ``noetl credential rotate-key`` runs. ``orchestrate`` and ``reap`` switch the
    background tasks (a read-only API replica may run without them).

    Access: every client must send ``Authorization: Bearer <service_token>`` (the gateway, the CLI
    and remote workers do), loopback ones included; without a configured ``service_token`` the
    server uses the ``service.token`` file of its data directory, created on first start
    (``noetl.store.servicetoken``). ``insecure_loopback`` - a development flag - serves loopback
    clients that send no token at all. ``/health`` is always open.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    database_url: str | None = None
    data_dir: Path | None = None
    encryption_key: str | None = None
    encryption_key_file: Path | None = None
    previous_keys: str | None = None
    service_token: str | None = None
    insecure_loopback: bool = False
    reaper_interval: float = 1.0
    """Seconds between reaper runs (one indexed query when no lease expired)."""
    poll_seconds: float = 1.0
    pool_min_size: int = 1
    pool_max_size: int = 10
    pool_timeout: float = 5.0
    """Seconds a request may wait for a database connection before it gets 503 with Retry-After
    (a saturated server says so quickly rather than holding clients for half a minute)."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    migrate: bool = True
    orchestrate: bool = True
    reap: bool = True
    shutdown_grace: float = 5.0
    log_level: str = "info"
    inline_results: int = 10_000
    """Loops with more items keep their per-iteration results in the event log only (DECISIONS 19);
    give workers the same value (``NOETL_INLINE_RESULTS`` is read by both)."""
    max_queue_depth: int = 10_000
    """Ready commands a pool may hold before ``POST /api/execute`` answers 429 (0: no bound)."""
    queue_depth_by_pool: str = ""
    """Bounds for particular pools, e.g. ``gpu=100,io=5000``; others have ``max_queue_depth``."""

    def queue_bound(self, pool: str) -> int:
        """The queue bound of ``pool`` (0: none)."""
        for part in (p.strip() for p in self.queue_depth_by_pool.split(",")):
            name, sep, value = part.partition("=")
            if sep and name.strip() == pool:
                return int(value)
        return self.max_queue_depth

    retry_after_seconds: int = 2
    """The ``Retry-After`` of a 429."""
    schedule: bool = True
    """Run the scheduler (leader-elected: one server at a time fires schedules and ages priorities)."""
    scheduler_tick: float = 1.0
    priority_aging_seconds: float = 30.0
    """A ready command gains one priority step per this many seconds of waiting (0: no aging)."""
    pools_by_kind: str = ""
    """Default pool per tool kind for steps without ``spec.pool``, e.g. ``python=cpu,http=io``
    (workers that decide need the same setting: NOETL_POOLS_BY_KIND)."""

    log_format: str = "text"
    """``text`` or ``json`` (one object a line with execution_id, step, command_id, trace_id)."""
    export_clickhouse_url: str | None = None
    """Export every event to this ClickHouse (``http://user:password@host:8123``); off when unset."""
    export_clickhouse_database: str = "noetl"
    export_batch: int = 5000
    """Events per export batch."""
    export_interval: float = 1.0
    """Seconds between export polls once the sink has caught up."""
    retention_seconds: float = 0.0
    """``NOETL_RETENTION`` (e.g. ``30d``): the scheduler's leader deletes, once an hour, executions
    that ended longer ago and that every export sink has (0: keep everything)."""
    otlp_traces: bool = False
    """Send the spans of ended executions over OTLP/HTTP: on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set (and ``OTEL_TRACES_EXPORTER`` is not ``none``, nor
    ``OTEL_SDK_DISABLED`` true). The SDK reads the other ``OTEL_*`` variables itself."""

    def __post_init__(self) -> None:
        for part in (p.strip() for p in self.queue_depth_by_pool.split(",") if p.strip()):
            name, sep, value = part.partition("=")
            if not sep or not name.strip() or not value.strip().isdigit():
                raise UsageError(
                    f"NOETL_MAX_QUEUE_DEPTH_BY_POOL: {part!r} is not POOL=BOUND (e.g. gpu=100,io=5000)",
                    field="NOETL_MAX_QUEUE_DEPTH_BY_POOL",
                )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ServerSettings:
        """Settings from ``NOETL_*`` variables in ``env``; unset ones keep their defaults."""
        values: dict[str, object] = {}
        for name, var in ENVIRONMENT.items():
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            values[name] = _convert(name, var, raw)
        values["otlp_traces"] = traces.otlp_enabled(env)
        return cls(**values)  # type: ignore[arg-type]


def _convert(name: str, var: str, raw: str) -> object:
    parse = _PARSERS.get(name, str)
    try:
        return parse(raw)
    except ValueError:
        raise UsageError(f"{var} must be a number or a boolean, got {raw!r}", field=var) from None


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


def _duration(raw: str) -> float:
    if raw.strip().lower() in ("0", "off", "none"):
        return 0.0
    try:
        return durations.seconds(raw, "NOETL_RETENTION")
    except UsageError as exc:
        raise ValueError(str(exc)) from None


def _path(raw: str) -> Path:
    return Path(raw).expanduser()


_PARSERS: dict[str, Callable[[str], object]] = {
    "port": int,
    "inline_results": int,
    "pool_max_size": int,
    "max_body_bytes": int,
    "reaper_interval": float,
    "pool_timeout": float,
    "poll_seconds": float,
    "data_dir": _path,
    "max_queue_depth": int,
    "retry_after_seconds": int,
    "scheduler_tick": float,
    "priority_aging_seconds": float,
    "encryption_key_file": _path,
    "insecure_loopback": _bool,
    "export_batch": int,
    "export_interval": float,
    "retention_seconds": _duration,
}
