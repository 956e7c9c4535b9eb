"""Telemetry over HTTP: the exporters' status and backfill, and per-step statistics of a playbook.

``GET /api/export/status``          every sink's cursor: events exported, lag in events and seconds
``POST /api/export/backfill``       send the events written since a time again (idempotent at the sink)
``GET /api/stats/{path}?window=24h`` per step: calls, failures, retries, p50/p95/max duration

Statistics come from ClickHouse when an export sink is configured and has caught up with the
window, else from PostgreSQL's event log; the answer says which (``source``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, Field

from noetl.dsl import durations
from noetl.errors import SinkError, UsageError
from noetl.server.context import Server, ServerContext
from noetl.server.settings import ServerSettings
from noetl.store import exports
from noetl.store.db import Connection
from noetl.telemetry import clickhouse, export, traces

router = APIRouter(prefix="/api", tags=["telemetry"])


def exporter(settings: ServerSettings, pool: AsyncConnectionPool[Connection]) -> export.Exporter | None:
    """The server's exporter, when a sink is configured: ClickHouse (``NOETL_EXPORT_CLICKHOUSE_URL``)
    and OTLP traces (the standard ``OTEL_EXPORTER_OTLP_*`` variables)."""
    sinks: list[export.Sink] = []
    if settings.export_clickhouse_url:
        sinks.append(
            clickhouse.EventSink(settings.export_clickhouse_url, settings.export_clickhouse_database)
        )
    if settings.otlp_traces:
        sinks.append(traces.TraceSink())
    if not sinks:
        return None
    assert settings.database_url is not None
    config = export.ExportSettings(batch=settings.export_batch, interval=settings.export_interval)
    return export.Exporter(settings.database_url, pool, sinks, config)


def _events_sink(server: ServerContext) -> clickhouse.EventSink | None:
    found = server.exporter.sink(clickhouse.SINK) if server.exporter is not None else None
    return found if isinstance(found, clickhouse.EventSink) else None


def window_seconds(text: str) -> float:
    """``30m``, ``24h``, ``7d``, ``2w`` or plain seconds."""
    return durations.seconds(text, "window")


class BackfillRequest(BaseModel):
    since: datetime | None = None
    """Re-send events written at or after this time (ISO 8601)."""
    window: str | None = Field(default=None, max_length=32)
    """Or: re-send the events of the last ``window`` (e.g. ``24h``)."""


@router.get("/export/status")
async def export_status(server: Server) -> dict[str, Any]:
    async with server.pool.connection() as conn:
        sinks = await export.status(conn)
    leader = server.exporter.leader if server.exporter is not None else None
    return {"configured": server.exporter is not None, "leader": leader, "sinks": sinks}


@router.post("/export/backfill")
async def export_backfill(body: BackfillRequest, server: Server) -> dict[str, Any]:
    sink = _events_sink(server)
    if sink is None or server.exporter is None:
        raise UsageError("no ClickHouse export is configured (set NOETL_EXPORT_CLICKHOUSE_URL on the server)")
    if (body.since is None) == (body.window is None):
        raise UsageError("give exactly one of 'since' (a time) or 'window' (e.g. 24h)", field="since")
    since = body.since or datetime.now(UTC) - timedelta(seconds=window_seconds(body.window or ""))
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    sent = await sink.backfill(server.pool, since, server.settings.export_batch, server.exporter.kinds)
    return {"sink": sink.name, "since": since.isoformat(), "events": sent}


@router.get("/stats/{path:path}")
async def stats(path: str, server: Server, window: str = "24h") -> dict[str, Any]:
    seconds = window_seconds(window)
    since = datetime.now(UTC) - timedelta(seconds=seconds)
    async with server.pool.connection() as conn:
        totals = await exports.execution_stats(conn, path, since)
        steps, source = await _step_stats(server, conn, path, since)
    return {
        "path": path,
        "window": window,
        "since": since.isoformat(),
        "source": source,
        "executions": totals,
        "steps": steps,
    }


async def _step_stats(
    server: Server, conn: Connection, path: str, since: datetime
) -> tuple[list[dict[str, Any]], str]:
    sink = _events_sink(server)
    if sink is not None and await _caught_up(conn):
        try:
            return await sink.step_stats(path, since), "clickhouse"
        except SinkError:
            pass  # the sink is down: the log has the same answer
    rows = await exports.step_stats(conn, path, since)
    return [clickhouse.stat_row(row) for row in rows], "postgres"


async def _caught_up(conn: Connection) -> bool:
    cursor = await exports.cursor(conn, clickhouse.SINK)
    events, _ = await exports.lag(conn, cursor.position, cap=1)
    return events == 0
