"""The command queue over HTTP, for workers that cannot reach PostgreSQL directly.

Claim, heartbeat and release are the store's queue operations, one transaction each; a remote
worker reports results through ``POST /api/events``. ``GET /api/queue`` shows the queue: ready
commands per pool, and per pool, priority and concurrency key the ready and in-flight counts and the
oldest ready command's wait (what ``noetl queue`` prints).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from noetl.server import views
from noetl.server.context import Server
from noetl.store import backlog, commands

router = APIRouter(prefix="/api", tags=["queue"])

MAX_LEASE_SECONDS = 3600.0


class ClaimRequest(BaseModel):
    worker_id: str = Field(min_length=1)
    pools: list[str] = Field(default_factory=lambda: ["default"], min_length=1)
    limit: int = Field(default=1, ge=1, le=1000)
    lease_seconds: float = Field(default=60.0, gt=0, le=MAX_LEASE_SECONDS)
    resources: dict[str, int] = Field(default_factory=dict)
    """The worker's capacity for steps' ``spec.resources``."""


class HeartbeatRequest(BaseModel):
    worker_id: str = Field(min_length=1)
    command_ids: list[str]
    lease_seconds: float = Field(default=60.0, gt=0, le=MAX_LEASE_SECONDS)


class ReleaseRequest(BaseModel):
    worker_id: str = Field(min_length=1)
    command_ids: list[str]


@router.post("/commands/claim")
async def claim(body: ClaimRequest, server: Server) -> dict[str, Any]:
    async with server.pool.connection() as conn, conn.transaction():
        leases = await commands.claim(
            conn, body.worker_id, body.pools, body.limit, body.lease_seconds, body.resources
        )
    return {"commands": [views.lease(item) for item in leases]}


@router.post("/commands/heartbeat")
async def heartbeat(body: HeartbeatRequest, server: Server) -> dict[str, list[str]]:
    async with server.pool.connection() as conn, conn.transaction():
        lost = await commands.heartbeat(conn, body.worker_id, body.command_ids, body.lease_seconds)
    return {"lost": sorted(lost)}


@router.post("/commands/release")
async def release(body: ReleaseRequest, server: Server) -> dict[str, int]:
    async with server.pool.connection() as conn, conn.transaction():
        await commands.release(conn, body.worker_id, body.command_ids)
    return {"released": len(body.command_ids)}


@router.get("/queue")
async def depth(server: Server) -> dict[str, Any]:
    async with server.pool.connection() as conn:
        pools = await commands.depth(conn)
        groups = await backlog.stats(conn)
    return {"pools": pools, "groups": groups, "max_queue_depth": server.settings.max_queue_depth}
