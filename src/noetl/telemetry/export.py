"""The event exporter: every event of the log, delivered to ClickHouse in batches, at least once.

One server exports at a time (a session advisory lock, as the reaper and the scheduler lead). The
leader reads the log after the sink's durable cursor (``noetl.store.exports``), turns each event into
a flat row (:func:`row`), inserts the batch, and only then advances the cursor; a crash between the
two sends the batch again, which the sink's table counts once. While ClickHouse is down the leader
backs off (up to :data:`MAX_BACKOFF_SECONDS`), records the error on the cursor for
``noetl export status``, and resumes from the cursor when the sink answers again.

Events are stored redacted (secrets never reach the log), so what leaves is what the log holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from noetl.dsl import parser
from noetl.errors import NoetlError, SinkError
from noetl.store import catalog, db, exports
from noetl.store.db import Connection
from noetl.store.errors import translated
from noetl.telemetry.clickhouse import ClickHouse

log = logging.getLogger("noetl.export")

SINK = "clickhouse"
LEADER_LOCK_KEY = 0x6E6F65746C_0010
"""Fixed advisory lock key of the export leader ("noetl" in ASCII + 16)."""
MAX_BACKOFF_SECONDS = 5.0
KINDS_CACHED = 256
"""Playbooks whose step -> tool kind map the exporter keeps (by catalog id)."""

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


@dataclass(frozen=True, slots=True)
class ExportSettings:
    """Where and how to export; ``clickhouse_url`` None switches the exporter off."""

    clickhouse_url: str | None = None
    database: str = "noetl"
    batch: int = 5000
    interval: float = 1.0


# ---- one event -> one row (pure) ------------------------------------------------------------------


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


def step_kinds(content: str) -> dict[str, str]:
    """Step name -> tool kind (``http+python`` for a pipeline) of a playbook's YAML; empty if it no
    longer parses (the export must not stop over an old catalog entry)."""
    try:
        playbook = parser.parse(content)
    except NoetlError:
        return {}
    return {step.name: "+".join(task.kind for task in step.tool) for step in playbook.workflow}


# ---- the exporter -----------------------------------------------------------------------------------


class Exporter:
    """The export task of one server (``run``); ``leader`` says whether it exports right now."""

    def __init__(self, database_url: str, pool: Any, settings: ExportSettings) -> None:
        assert settings.clickhouse_url is not None, "the exporter runs only with a sink"
        self.database_url = database_url
        self.pool = pool
        self.settings = settings
        self.sink = ClickHouse(settings.clickhouse_url, database=settings.database)
        self.leader = False
        self.failures = 0
        """Batches the sink refused since this server started (``/metrics``)."""
        self._kinds: OrderedDict[int, dict[str, str]] = OrderedDict()
        self._schema_ready = False

    async def run(self, stop: asyncio.Event) -> None:
        """Export while this server leads, until ``stop`` is set; survives lost connections."""
        try:
            while not stop.is_set():
                try:
                    conn = await db.connect(self.database_url)
                except NoetlError as exc:
                    log.warning("exporter cannot connect (%s); retrying", exc)
                    await _wait(stop, MAX_BACKOFF_SECONDS)
                    continue
                try:
                    await self._lead(conn, stop)
                except NoetlError as exc:
                    log.warning("exporter lost its connection (%s); reconnecting", exc)
                finally:
                    self.leader = False
                    await conn.close()
        finally:
            await self.sink.close()

    async def _lead(self, conn: Connection, stop: asyncio.Event) -> None:
        backoff = self.settings.interval
        while not stop.is_set():
            if self.leader:
                with translated("checking the exporter's connection"):
                    await conn.execute("SELECT 1")
            else:
                self.leader = await _try_lock(conn)
            if not self.leader:
                await _wait(stop, self.settings.interval)
                continue
            try:
                sent = await self.export_once()
            except SinkError as exc:
                self.failures += 1
                await self._failed(str(exc))
                log.warning("export to %s failed (%s); retrying in %.1fs", SINK, exc, backoff)
                await _wait(stop, backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            backoff = self.settings.interval
            if sent < self.settings.batch:  # caught up: wait for more
                await _wait(stop, self.settings.interval)

    async def export_once(self) -> int:
        """Deliver the next batch after the cursor; how many events it held."""
        if not self._schema_ready:
            await self.sink.ensure_schema()
            self._schema_ready = True
        async with self.pool.connection() as conn:
            cursor = await exports.cursor(conn, SINK)
            events = await exports.batch(conn, cursor.position, self.settings.batch)
            if not events:
                return 0
            rows = [row(e, await self._tool_kinds(conn, e["catalog_id"]), _now_ms()) for e in events]
        await self.sink.insert("events", rows)
        async with self.pool.connection() as conn:
            await exports.advance(conn, SINK, exports.position_of(events[-1]), len(events))
        return len(events)

    async def backfill(self, since: datetime) -> int:
        """Send every event written at or after ``since`` again (the cursor does not move)."""
        await self.sink.ensure_schema()
        position, total = exports.Position(), 0
        while True:
            async with self.pool.connection() as conn:
                events = await exports.since(conn, since, position, self.settings.batch)
                rows = [row(e, await self._tool_kinds(conn, e["catalog_id"]), _now_ms()) for e in events]
            if not events:
                return total
            total += await self.sink.insert("events", rows)
            position = exports.position_of(events[-1])

    async def step_stats(self, path: str, since: datetime) -> list[dict[str, Any]]:
        """``GET /api/stats`` from the sink: per step calls, failures, retries, p50/p95/max ms."""
        db_ = self.sink.database
        query = (
            "SELECT step, count() AS calls, countIf(event_type = 'call.error') AS failures, "
            "sum(if(tries > 1, tries - 1, 0)) AS retries, quantile(0.5)(duration_ms) AS p50_ms, "
            "quantile(0.95)(duration_ms) AS p95_ms, max(duration_ms) AS max_ms "
            f"FROM {db_}.events FINAL WHERE playbook_path = '{_quote(path)}' "
            f"AND at >= toDateTime({int(since.timestamp())}) "
            "AND event_type IN ('call.done', 'call.error') GROUP BY step ORDER BY step"
        )
        return [stat_row(r) for r in await self.sink.rows(query)]

    async def _tool_kinds(self, conn: Connection, catalog_id: int | None) -> Mapping[str, str]:
        if catalog_id is None:
            return {}
        kinds = self._kinds.get(catalog_id)
        if kinds is None:
            entry = await catalog.get(conn, catalog_id=catalog_id)
            kinds = step_kinds(entry.content) if entry is not None else {}
            self._kinds[catalog_id] = kinds
            if len(self._kinds) > KINDS_CACHED:
                self._kinds.popitem(last=False)
        else:
            self._kinds.move_to_end(catalog_id)
        return kinds

    async def _failed(self, error: str) -> None:
        with contextlib.suppress(NoetlError):
            async with self.pool.connection() as conn:
                await exports.failed(conn, SINK, error)


async def status(conn: Connection) -> list[dict[str, Any]]:
    """Every sink's cursor with its lag in events and seconds (``noetl export status``)."""
    out = []
    for cursor in await exports.cursors(conn):
        events, seconds = await exports.lag(conn, cursor.position)
        out.append(
            {
                "sink": cursor.sink,
                "exported": cursor.exported,
                "lag_events": events,
                "lag_seconds": round(seconds, 3),
                "last_error": cursor.last_error,
                "updated_at": cursor.updated_at.isoformat(),
            }
        )
    return out


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


async def _try_lock(conn: Connection) -> bool:
    with translated("taking the exporter lock"):
        cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK_KEY,))
        found = await cursor.fetchone()
    return bool(found and found[0])


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
