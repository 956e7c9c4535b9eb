"""Event ingest: a worker's report of a finished command, over HTTP (REFERENCE §5.6).

A report carries the events a worker produced for one command attempt (``call.done`` or
``call.error``, ``step.exit``, ``command.completed`` or ``command.failed``). It is recorded by
``commands.report`` only while the reporting worker still holds that attempt's lease, so a report
sent twice (a retry after a lost answer) is ``duplicate`` the second time and changes nothing:
exactly-once recording. The orchestrator is woken by the store's NOTIFY.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from noetl.server.context import Server
from noetl.store import commands, ports

router = APIRouter(prefix="/api/events", tags=["events"])

MAX_BATCH = 1000


class ReportedEvent(BaseModel):
    """One event of a report, in ``Event.to_dict`` form (ids are assigned when it is recorded)."""

    model_config = ConfigDict(extra="ignore")

    event_type: str = Field(min_length=1)
    step: str | None = None
    command_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    timestamp: float = 0.0


class ReportRequest(BaseModel):
    execution_id: int | None = None
    command_id: str = Field(min_length=1)
    attempt: int = Field(ge=1)
    worker_id: str = Field(min_length=1)
    ok: bool
    events: list[ReportedEvent]


class ReportBatch(BaseModel):
    reports: list[ReportRequest] = Field(max_length=MAX_BATCH)


@router.post("")
async def ingest(body: ReportRequest, server: Server) -> dict[str, str]:
    async with server.pool.connection() as conn, conn.transaction():
        recorded = await commands.report(
            conn,
            body.worker_id,
            body.command_id,
            body.attempt,
            body.ok,
            [e.model_dump() for e in body.events],
        )
    return {"status": "accepted" if recorded else "duplicate", "command_id": body.command_id}


@router.post("/batch")
async def ingest_batch(body: ReportBatch, server: Server) -> dict[str, int]:
    reports = [_stored(report) for report in body.reports]
    async with server.pool.connection() as conn, conn.transaction():
        accepted = await commands.report_many(conn, reports)
    return {"accepted": len(accepted), "duplicates": len(reports) - len(accepted)}


def _stored(report: ReportRequest) -> ports.Report:
    events = [event.model_dump() for event in report.events]
    return ports.Report(report.worker_id, report.command_id, report.attempt, report.ok, events)
