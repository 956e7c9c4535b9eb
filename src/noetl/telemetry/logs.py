"""Process logging for the server, the worker and the gateway: plain text or one JSON object a line.

``--log-format json`` (``NOETL_LOG_FORMAT=json``) writes each record as an object with ``ts``,
``level``, ``logger`` and ``message``, plus the structured fields a record carries (``execution_id``,
``step``, ``command_id``, ``worker_id``, ``trace_id``, ...; passed with ``extra=``) and the exception
text when there is one. Log aggregators (Loki, Elasticsearch, Cloud Logging) read it as is.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
FIELDS = ("execution_id", "step", "command_id", "worker_id", "trace_id", "span_id", "pool", "attempt")
"""Structured fields copied from a record into its JSON object when present."""


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def check(fmt: str) -> str:
    """``fmt`` if it is a known log format; ValueError otherwise."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return fmt


def configure(level: str = "info", fmt: str = "text") -> None:
    """Send every logger's records to stderr in ``fmt`` at ``level`` (replaces earlier handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if check(fmt) == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def uvicorn_config(fmt: str) -> dict[str, object] | None:
    """A uvicorn ``log_config`` that leaves its loggers to the root handler (None for text: its own)."""
    if check(fmt) == "text":
        return None
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "loggers": {name: {"handlers": [], "propagate": True} for name in ("uvicorn", "uvicorn.access")},
    }
