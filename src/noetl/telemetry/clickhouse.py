"""A small ClickHouse client over its HTTP interface (the one every ClickHouse version speaks).

Statements go as the POST body; rows are inserted as ``JSONEachRow``; results are read as
``JSONEachRow`` lines. The schema of the exported events ships beside this module
(``clickhouse.sql``; ``deploy/clickhouse/schema.sql`` is the same file for operators) and is written
for ClickHouse 18.16 and later: no DateTime64, Map, JSON type or query parameters.

Failures become :class:`~noetl.errors.SinkError` naming the server's address and the operation, never
the password (sent as the ``X-ClickHouse-Key`` header, not in the URL).

:class:`EventSink` is the exporter's ClickHouse sink: one flat row per event (:func:`row`), inserted
into ``events``; it also answers ``noetl stats`` and sends backfills.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from noetl.errors import SinkError
from noetl.store import exports
from noetl.store.db import Connection

if TYPE_CHECKING:
    from noetl.telemetry.export import KindCache

SCHEMA_FILE = "clickhouse.sql"
SINK = "clickhouse"
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def schema_statements(database: str) -> list[str]:
    """The statements of the shipped schema, for ``database``."""
    if not NAME.match(database):
        raise SinkError(f"ClickHouse database name {database!r} is not a plain identifier")
    text = resources.files("noetl.telemetry").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip().replace("noetl.", f"{database}.") for s in body.split(";") if s.strip()]


class ClickHouse:
    """One ClickHouse server: ``url`` like ``http://user:password@127.0.0.1:8123``."""

    def __init__(self, url: str, *, database: str = "noetl", timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SinkError(f"ClickHouse URL must be http(s)://host:port, got {_safe(url)!r}")
        headers = {"X-ClickHouse-User": parts.username or "default"}
        if parts.password:
            headers["X-ClickHouse-Key"] = parts.password
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        self.address = urlunsplit((parts.scheme, netloc, "/", "", ""))
        self.database = database
        self._client = httpx.AsyncClient(base_url=self.address, headers=headers, timeout=timeout)

    async def close(self) -> None:
        await self._client.aclose()

    async def execute(self, statement: str, *, what: str = "statement") -> str:
        """Run one statement; its raw response text."""
        return await self._post(statement.encode(), {}, what)

    async def insert(self, table: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert ``rows`` into ``table`` as JSONEachRow; how many were sent."""
        lines = [json.dumps(row, separators=(",", ":"), default=str) for row in rows]
        if not lines:
            return 0
        query = f"INSERT INTO {self.database}.{table} FORMAT JSONEachRow"
        await self._post(("\n".join(lines) + "\n").encode(), {"query": query}, f"insert into {table}")
        return len(lines)

    async def rows(self, query: str) -> list[dict[str, Any]]:
        """The rows of a SELECT (``FORMAT JSONEachRow`` is added)."""
        text = await self._post(f"{query} FORMAT JSONEachRow".encode(), {}, "query")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    async def ensure_schema(self) -> None:
        """Create the database, the events table and its views if they are missing."""
        await self.execute(f"CREATE DATABASE IF NOT EXISTS {self.database}", what="create database")
        for statement in schema_statements(self.database):
            await self.execute(statement, what="create schema")

    async def _post(self, body: bytes, params: dict[str, str], what: str) -> str:
        try:
            response = await self._client.post("/", content=body, params=params)
        except httpx.HTTPError as exc:
            raise SinkError(f"ClickHouse at {self.address}: {what} failed: {type(exc).__name__}") from None
        if response.status_code != 200:
            first = response.text.strip().splitlines()[0][:300] if response.text.strip() else ""
            raise SinkError(f"ClickHouse at {self.address}: {what} failed ({response.status_code}): {first}")
        return response.text


def _safe(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        port = f":{parts.port}" if parts.port else ""
        netloc = f"{parts.username or ''}:***@{parts.hostname or ''}{port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return url


# ---- the exporter's sink ------------------------------------------------------------------------------

_STATUS = {
    "call.done": "ok",
    "call.error": "error",
    "command.completed": "COMPLETED",
    "command.failed": "FAILED",
    "command.cancelled": "CANCELLED",
    "playbook.completed": "COMPLETED",
    "playbook.failed": "FAILED",
    "playbook.cancelled": "CANCELLED",
    "step.skipped": "SKIPPED",
}


def row(event: Mapping[str, Any], tool_kinds: Mapping[str, str], exported_at_ms: int) -> dict[str, Any]:
    """The flat ClickHouse row of one event read by ``exports.batch``."""
    data = json.loads(event["data"]) if isinstance(event["data"], str) else dict(event["data"] or {})
    found = data.get("error")
    error: dict[str, Any] = found if isinstance(found, dict) else {}
    step = event["step"] or ""
    index = data.get("index")
    duration = data.get("duration_ms")
    created: datetime = event["created_at"]
    return {
        "execution_id": int(event["execution_id"]),
        "event_id": int(event["event_id"]),
        "event_type": event["event_type"],
        "step": step,
        "command_id": event["command_id"] or "",
        "playbook_path": event["path"] or "",
        "catalog_id": int(event["catalog_id"] or 0),
        "parent_execution_id": int(event["parent_execution_id"] or 0),
        "status": str(data.get("status") or _STATUS.get(event["event_type"], "")),
        "tool_kind": tool_kinds.get(step, ""),
        "pool": event["pool"] or "",
        "worker_id": event["worker_id"] or "",
        "attempt": int(event["attempt"] or data.get("attempt") or 0),
        "tries": int(data["attempts"]) if isinstance(data.get("attempts"), int) else 0,
        "loop_index": int(index) if isinstance(index, int) else -1,
        "duration_ms": float(duration) if isinstance(duration, int | float) else None,
        "error_kind": str(error.get("kind") or ""),
        "error_message": str(error.get("message") or "")[:4000],
        "at": int(event["at"]),
        "at_seconds": float(event["at"]),
        "created_at": int(created.timestamp()),
        "exported_at": exported_at_ms,
        "data": event["data"] if isinstance(event["data"], str) else json.dumps(data),
    }


class EventSink:
    """Every event as a row of ``events`` (the exporter's ``clickhouse`` sink)."""

    name = SINK

    def __init__(self, url: str, database: str = "noetl") -> None:
        self.client = ClickHouse(url, database=database)
        self._schema_ready = False

    async def deliver(self, conn: Connection, events: Sequence[dict[str, Any]], kinds: KindCache) -> None:
        if not self._schema_ready:
            await self.client.ensure_schema()
            self._schema_ready = True
        rows = [row(e, await kinds.of(conn, e["catalog_id"]), _now_ms()) for e in events]
        await self.client.insert("events", rows)

    async def close(self) -> None:
        await self.client.close()

    async def backfill(self, pool: Any, since: datetime, batch: int, kinds: KindCache) -> int:
        """Send every event written at or after ``since`` again (the cursor does not move)."""
        await self.client.ensure_schema()
        position, total = exports.Position(), 0
        while True:
            async with pool.connection() as conn:
                events = await exports.since(conn, since, position, batch)
                rows = [row(e, await kinds.of(conn, e["catalog_id"]), _now_ms()) for e in events]
            if not events:
                return total
            total += await self.client.insert("events", rows)
            position = exports.position_of(events[-1])

    async def step_stats(self, path: str, since: datetime) -> list[dict[str, Any]]:
        """``GET /api/stats`` from ClickHouse: per step calls, failures, retries, p50/p95/max ms."""
        query = (
            "SELECT step, count() AS calls, countIf(event_type = 'call.error') AS failures, "
            "sum(if(tries > 1, tries - 1, 0)) AS retries, quantile(0.5)(duration_ms) AS p50_ms, "
            "quantile(0.95)(duration_ms) AS p95_ms, max(duration_ms) AS max_ms "
            f"FROM {self.client.database}.events FINAL WHERE playbook_path = '{_quote(path)}' "
            f"AND at >= toDateTime({int(since.timestamp())}) "
            "AND event_type IN ('call.done', 'call.error') GROUP BY step ORDER BY step"
        )
        return [stat_row(r) for r in await self.client.rows(query)]


def stat_row(raw: Mapping[str, Any]) -> dict[str, Any]:
    """One step's statistics in the API's shape (from ClickHouse's or PostgreSQL's row)."""
    calls, failures, retries = int(raw["calls"]), int(raw["failures"]), int(raw["retries"] or 0)
    return {
        "step": raw["step"],
        "calls": calls,
        "failures": failures,
        "failure_rate": round(failures / calls, 4) if calls else 0.0,
        "retries": retries,
        "retry_rate": round(retries / calls, 4) if calls else 0.0,
        "p50_ms": _ms(raw["p50_ms"]),
        "p95_ms": _ms(raw["p95_ms"]),
        "max_ms": _ms(raw["max_ms"]),
    }


def _ms(value: Any) -> float | None:
    return round(float(value), 3) if value is not None else None


def _quote(text: str) -> str:
    """``text`` inside a single-quoted ClickHouse string literal."""
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _now_ms() -> int:
    return int(time.time() * 1000)
