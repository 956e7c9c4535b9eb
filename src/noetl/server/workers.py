"""The worker registry over HTTP: register, heartbeat, deregister, list (REFERENCE §7).

A worker that registers without an id gets one (``<name>-<random>``), which it sends with its
heartbeats. Deregistration accepts the id in the body or as a query parameter, because some
clients cannot send a body with DELETE. Workers whose heartbeat is older than
``STALE_AFTER_SECONDS`` are listed with status ``stale``.
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from noetl.errors import UsageError
from noetl.server.context import Server
from noetl.server.problems import NotFound
from noetl.store import workers

router = APIRouter(prefix="/api/worker", tags=["workers"])


class RegisterRequest(BaseModel):
    worker_id: str | None = None
    name: str = Field(min_length=1)
    pools: list[str] = Field(default_factory=lambda: ["default"])
    capacity: int = Field(default=1, ge=1)
    hostname: str | None = None
    pid: int | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


class WorkerRef(BaseModel):
    worker_id: str = Field(min_length=1)


class DeregisterRequest(BaseModel):
    worker_id: str | None = None


@router.post("/pool/register")
async def register(body: RegisterRequest, server: Server) -> dict[str, Any]:
    worker_id = body.worker_id or f"{body.name}-{secrets.token_hex(4)}"
    async with server.pool.connection() as conn, conn.transaction():
        await workers.register(
            conn, worker_id, body.name, body.pools, body.capacity, body.hostname, body.pid, body.meta
        )
    return {"status": "registered", "worker_id": worker_id, "name": body.name, "pools": body.pools}


@router.post("/pool/heartbeat")
async def heartbeat(body: WorkerRef, server: Server) -> dict[str, str]:
    async with server.pool.connection() as conn, conn.transaction():
        known = await workers.heartbeat(conn, body.worker_id)
    if not known:
        raise NotFound(f"worker {body.worker_id} is not registered; register again")
    return {"status": "ok", "worker_id": body.worker_id}


@router.post("/pool/deregister")
@router.delete("/pool/deregister")
async def deregister(
    server: Server, body: DeregisterRequest | None = None, worker_id: str | None = None
) -> dict[str, str]:
    target = (body.worker_id if body is not None else None) or worker_id
    if not target:
        raise UsageError("give worker_id (in the body or as a query parameter)")
    async with server.pool.connection() as conn, conn.transaction():
        known = await workers.deregister(conn, target)
    if not known:
        raise NotFound(f"worker {target} is not registered")
    return {"status": "deregistered", "worker_id": target}


STALE_AFTER_SECONDS = 120.0
"""A worker silent for this long (twice the default lease) is listed as ``stale``: it most likely
died without deregistering (SIGKILL, lost machine); its leased commands return to the queue when
their leases expire."""


@router.get("/pools")
async def list_workers(server: Server) -> dict[str, list[dict[str, Any]]]:
    async with server.pool.connection() as conn:
        rows = await workers.list(conn)
    for row in rows:
        age = row.get("heartbeat_age")
        if age is not None and age > STALE_AFTER_SECONDS:
            row["status"] = "stale"
    return {"workers": rows}
