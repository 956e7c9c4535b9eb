"""``/api/schedules`` and ``/api/resources``: the scheduling objects an operator manages.

Schedules start executions on a cron expression or an interval (``noetl.server.scheduler`` fires
them); global resources cap how many units of a name running commands hold across all workers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from noetl.errors import UsageError
from noetl.server import scheduler
from noetl.server.context import Server
from noetl.server.problems import NotFound
from noetl.store import resources, schedules
from noetl.store.schedules import Schedule

router = APIRouter(prefix="/api", tags=["scheduling"])


class ScheduleRequest(BaseModel):
    name: str = Field(min_length=1)
    path: str = Field(min_length=1)
    cron: str | None = None
    interval_seconds: float | None = Field(default=None, gt=0)
    timezone: str = "UTC"
    payload: dict[str, Any] = Field(default_factory=dict)
    misfire: Literal["skip", "run_once", "catch_up"] = "run_once"
    catch_up_limit: int = Field(default=10, ge=1)


class ResourceRequest(BaseModel):
    capacity: int = Field(ge=0)


def view(item: Schedule) -> dict[str, Any]:
    return {
        "name": item.name,
        "path": item.path,
        "cron": item.cron,
        "interval_seconds": item.interval_seconds,
        "timezone": item.timezone,
        "payload": item.payload,
        "misfire": item.misfire,
        "catch_up_limit": item.catch_up_limit,
        "paused": item.paused,
        "next_run_at": item.next_run_at.isoformat(),
        "last_run_at": item.last_run_at.isoformat() if item.last_run_at else None,
        "last_execution_id": str(item.last_execution_id) if item.last_execution_id else None,
        "runs": item.runs,
    }


@router.post("/schedules")
async def put_schedule(body: ScheduleRequest, server: Server) -> dict[str, Any]:
    if (body.cron is None) == (body.interval_seconds is None):
        raise UsageError("give exactly one of cron and interval_seconds")
    if body.cron is not None:
        scheduler.check_cron(body.cron)
    scheduler.zone(body.timezone)
    first = scheduler.next_after(body.cron, body.interval_seconds, body.timezone, datetime.now(UTC))
    async with server.pool.connection() as conn:
        saved = await schedules.put(
            conn,
            body.name,
            body.path,
            cron=body.cron,
            interval_seconds=body.interval_seconds,
            timezone=body.timezone,
            payload=body.payload,
            misfire=body.misfire,
            catch_up_limit=body.catch_up_limit,
            next_run_at=first,
        )
    return view(saved)


@router.get("/schedules")
async def list_schedules(request: Request, server: Server) -> dict[str, Any]:
    async with server.pool.connection() as conn:
        found = await schedules.list(conn)
    leads = getattr(request.app.state, "scheduler", None)
    return {"schedules": [view(s) for s in found], "leader": bool(leads and leads.leader)}


@router.post("/schedules/{name}/pause")
async def pause_schedule(name: str, server: Server) -> dict[str, Any]:
    async with server.pool.connection() as conn:
        return view(_found(name, await schedules.pause(conn, name)))


@router.post("/schedules/{name}/resume")
async def resume_schedule(name: str, server: Server) -> dict[str, Any]:
    async with server.pool.connection() as conn:
        current = _found(name, await schedules.get(conn, name))
        now = datetime.now(UTC)
        first = scheduler.next_after(current.cron, current.interval_seconds, current.timezone, now)
        return view(_found(name, await schedules.resume(conn, name, first)))


@router.delete("/schedules/{name}")
async def delete_schedule(name: str, server: Server) -> dict[str, Any]:
    async with server.pool.connection() as conn:
        if not await schedules.delete(conn, name):
            raise NotFound(f"schedule {name} not found")
    return {"deleted": name}


def _found(name: str, item: Schedule | None) -> Schedule:
    if item is None:
        raise NotFound(f"schedule {name} not found")
    return item


@router.put("/resources/{name}")
async def put_resource(name: str, body: ResourceRequest, server: Server) -> dict[str, Any]:
    async with server.pool.connection() as conn:
        await resources.put(conn, name, body.capacity)
    return {"name": name, "capacity": body.capacity}


@router.get("/resources")
async def list_resources(server: Server) -> dict[str, Any]:
    async with server.pool.connection() as conn:
        return {"resources": await resources.list(conn)}


@router.delete("/resources/{name}")
async def delete_resource(name: str, server: Server) -> dict[str, Any]:
    async with server.pool.connection() as conn:
        if not await resources.delete(conn, name):
            raise NotFound(f"resource {name} not found")
    return {"deleted": name}
