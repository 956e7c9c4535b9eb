"""The worker's settings: one frozen object built at the edge (CLI or environment) and passed down.

Every field has an environment variable (``NOETL_`` prefix, see :data:`ENVIRONMENT`) read by
:meth:`WorkerSettings.from_env`; nothing deeper in the worker reads ``os.environ``.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Final

from noetl.errors import UsageError
from noetl.telemetry import traces
from noetl.tools.pychild import DEFAULT_MEMORY_MB as DEFAULT_PYTHON_MEMORY_MB

ENVIRONMENT: Final = {
    "database_url": "NOETL_DATABASE_URL",
    "pools": "NOETL_WORKER_POOLS",
    "concurrency": "NOETL_WORKER_CONCURRENCY",
    "lease_seconds": "NOETL_WORKER_LEASE_SECONDS",
    "heartbeat_seconds": "NOETL_WORKER_HEARTBEAT_SECONDS",
    "poll_seconds": "NOETL_WORKER_POLL_SECONDS",
    "grace_seconds": "NOETL_WORKER_GRACE_SECONDS",
    "worker_id": "NOETL_WORKER_ID",
    "name": "NOETL_WORKER_NAME",
    "python_workers": "NOETL_WORKER_PYTHON_WORKERS",
    "python_memory_mb": "NOETL_WORKER_PYTHON_MEMORY_MB",
    "encryption_key_b64": "NOETL_ENCRYPTION_KEY",
    "encryption_key_file": "NOETL_ENCRYPTION_KEY_FILE",
    "decide": "NOETL_WORKER_DECIDE",
    "inline_results": "NOETL_INLINE_RESULTS",
    "resources": "NOETL_WORKER_RESOURCES",
    "pools_by_kind": "NOETL_POOLS_BY_KIND",
    "python_spin_seconds": "NOETL_WORKER_PYTHON_SPIN_SECONDS",
    "task_user": "NOETL_WORKER_TASK_USER",
    "python_scope_depth": "NOETL_WORKER_PYTHON_SCOPE_DEPTH",
    "log_format": "NOETL_LOG_FORMAT",
    "metrics_push_url": "NOETL_METRICS_PUSH_URL",
    "metrics_push_interval": "NOETL_METRICS_PUSH_INTERVAL",
    "file_roots": "NOETL_FILE_ROOTS",
    "template_undefined": "NOETL_TEMPLATE_UNDEFINED",
}
"""Field name -> environment variable read by :meth:`WorkerSettings.from_env`."""


def default_worker_id() -> str:
    """``<hostname>-<pid>-<random>``: unique per process, readable in the runtime table."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """How one worker process connects, what it claims, and how it paces leases and shutdown."""

    database_url: str
    pools: tuple[str, ...] = ("default",)
    concurrency: int = 16
    """Commands run at the same time (slots); claims never exceed the free slots."""
    lease_seconds: float = 15.0
    """How long a claimed command stays this worker's without a heartbeat: a dead worker's commands
    are queued again (``command.reissued``) within about this long plus the reaper's interval."""
    heartbeat_seconds: float | None = None
    """Lease extension period; ``None`` means a third of ``lease_seconds`` (5 s by default)."""
    poll_seconds: float = 1.0
    """Claim again after this long without a notification (the LISTEN fallback)."""
    grace_seconds: float = 30.0
    """On stop: how long in-flight commands may finish before they are cancelled and released."""
    worker_id: str = field(default_factory=default_worker_id)
    name: str = ""
    """Shown in the runtime table; defaults to ``worker@<hostname>``."""
    python_workers: int | None = None
    """Size of the python tool's process pool (default: the number of CPUs)."""
    python_memory_mb: int = DEFAULT_PYTHON_MEMORY_MB
    """Address-space cap of each python child (a task's ``memory_mb`` overrides it for that task)."""
    encryption_key_b64: str | None = None
    """Base64 of the 32-byte key that decrypts stored credentials."""
    encryption_key_file: str | None = None
    """A file holding that key as base64 text, used when ``encryption_key_b64`` is not given (created
    with a fresh key if missing - the embedded default, shared with the server on the same machine)."""
    decide: bool = True
    """Record and decide right after reporting, in the report's own transaction (the fast path);
    ``False`` leaves every decision to the server."""
    inline_results: int = 10_000
    """The engine's inline limit for loop results (DECISIONS 19); the same value as the server's."""
    python_spin_seconds: float = 0.0
    """How long an idle python child polls for its next task before it sleeps. Off on workers: a
    worker's steps are milliseconds apart (a durable commit between them), so a spin never catches
    the next task, and in loops the spinning children take CPU from PostgreSQL and the runtime
    (bench/distributed.py: W2 python 0.60 -> 0.38 s, W3 1,800 -> 2,800 items/s without it). The
    local runtime keeps its spin (``noetl run``: steps are microseconds apart)."""
    log_format: str = "text"
    """``text`` or ``json`` (one object a line with execution_id, step, command_id)."""
    metrics_push_url: str | None = None
    """Push metrics here: VictoriaMetrics' ``…/api/v1/import/prometheus`` or a Prometheus remote-write
    ``…/api/v1/write``. Unset: metrics go with the heartbeats to the server's ``/metrics``."""
    metrics_push_interval: float = 10.0
    trace_propagation: bool = False
    """Send a W3C ``traceparent`` with http tool calls (the command's span in its execution's trace):
    on when the standard ``OTEL_EXPORTER_OTLP_*ENDPOINT`` variables are set, as on the server."""
    resources: Mapping[str, int] = field(default_factory=dict)
    """Capacity for steps' ``spec.resources`` (``gpu=2,memory_mb=16000``): a claim takes a command
    only if what it needs fits in this less what the worker's running commands hold."""
    pools_by_kind: str = ""
    """Default pool per tool kind (``python=cpu,http=io``) for the commands this worker's decisions
    queue: must match the server's NOETL_POOLS_BY_KIND."""
    task_user: str = ""
    """The unprivileged account python and shell tasks run as; empty: ``nobody`` when the worker runs
    as root (if it can start python there), else the worker's own user (see noetl.tools.sandbox)."""
    python_scope_depth: int = 1
    """How many leading segments of a playbook's catalog path make the scope a python child serves
    (``finance/reports/daily`` with 1: ``finance``); 0 lets every playbook share the children."""
    file_roots: str = ""
    template_undefined: str = "strict"
    """How tasks render undefined values unless the playbook says (DECISIONS 10): strict or lenient."""
    """Directories the ``file`` tool may use, ``:``-separated (none: the tool refuses every path)."""

    def __post_init__(self) -> None:
        if not self.database_url:
            raise UsageError("the worker needs a database URL: pass --database-url or set NOETL_DATABASE_URL")
        names = (self.pools,) if isinstance(self.pools, str) else self.pools
        # "a,b" is two pools, as in NOETL_WORKER_POOLS; blanks are dropped.
        pools = tuple(part.strip() for name in names for part in name.split(",") if part.strip())
        object.__setattr__(self, "pools", tuple(dict.fromkeys(pools)))
        if not self.pools:
            raise UsageError("the worker needs at least one pool name (--pool / NOETL_WORKER_POOLS)")
        _positive("concurrency", self.concurrency)
        _positive("lease_seconds", self.lease_seconds)
        _positive("poll_seconds", self.poll_seconds)
        if self.grace_seconds < 0:
            raise UsageError(f"grace_seconds must be 0 or more, got {self.grace_seconds}")
        if self.python_workers is not None:
            _positive("python_workers", self.python_workers)
        _positive("python_memory_mb", self.python_memory_mb)
        if self.python_scope_depth < 0:
            raise UsageError(f"python_scope_depth must be 0 or more, got {self.python_scope_depth}")
        if self.template_undefined not in ("strict", "lenient"):
            raise UsageError(f"template_undefined must be strict or lenient, got {self.template_undefined!r}")
        if self.python_spin_seconds < 0:
            raise UsageError(f"python_spin_seconds must be 0 or more, got {self.python_spin_seconds}")
        if self.heartbeat_seconds is not None:
            _positive("heartbeat_seconds", self.heartbeat_seconds)
            if self.heartbeat_seconds >= self.lease_seconds:
                raise UsageError(
                    f"heartbeat_seconds ({self.heartbeat_seconds:g}) must be shorter than "
                    f"lease_seconds ({self.lease_seconds:g}), or leases expire between heartbeats"
                )
        if not self.name:
            object.__setattr__(self, "name", f"worker@{socket.gethostname()}")
        if isinstance(self.resources, str):
            object.__setattr__(self, "resources", parse_resources(self.resources))
        for resource, amount in self.resources.items():
            if amount < 0:
                raise UsageError(f"resource {resource} must be 0 or more, got {amount}")

    @property
    def heartbeat_interval(self) -> float:
        """Seconds between heartbeats: the setting, or a third of the lease."""
        return self.heartbeat_seconds if self.heartbeat_seconds is not None else self.lease_seconds / 3

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: object) -> WorkerSettings:
        """Settings from environment variables (:data:`ENVIRONMENT`); ``overrides`` (not None) win."""
        values: dict[str, object] = {}
        types = {f.name: f.type for f in fields(cls)}
        for name, variable in ENVIRONMENT.items():
            raw = env.get(variable)
            if raw not in (None, ""):
                values[name] = _convert(name, str(types[name]), raw, variable)
        values.update({k: v for k, v in overrides.items() if v is not None})
        values.setdefault("database_url", "")
        values.setdefault("trace_propagation", traces.otlp_enabled(env))
        return cls(**values)  # type: ignore[arg-type]


def parse_resources(text: str) -> dict[str, int]:
    """``"gpu=2,memory_mb=16000"`` as ``{"gpu": 2, "memory_mb": 16000}``; UsageError naming the bad part."""
    found: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, amount = part.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError(part)
            found[name.strip()] = int(amount)
        except ValueError:
            raise UsageError(f"resources: {part!r} is not NAME=UNITS (e.g. gpu=2,memory_mb=16000)") from None
    return found


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise UsageError(f"{name} must be more than 0, got {value}")


def _convert(name: str, annotation: str, raw: str, variable: str) -> object:
    """The text of an environment variable as the field's type; UsageError naming the variable."""
    try:
        if name == "pools":
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if name == "resources":
            return parse_resources(raw)
        if annotation.startswith("bool"):
            value = raw.strip().lower()
            if value in ("1", "true", "yes", "on"):
                return True
            if value in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if annotation.startswith("int"):
            return int(raw)
        if annotation.startswith("float"):
            return float(raw)
    except ValueError:
        raise UsageError(f"{variable}={raw!r} is not a valid {annotation.split(' ')[0]}") from None
    return raw


def tool_extras(settings: WorkerSettings) -> dict[str, object]:
    """What the integration tools read from ``Services.extras`` on this worker (the file roots)."""
    roots = tuple(os.path.abspath(part) for part in settings.file_roots.split(os.pathsep) if part)
    return {"file_roots": roots, "template_undefined": settings.template_undefined}
