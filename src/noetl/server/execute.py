"""``POST /api/execute``: start an execution of a catalog entry.

The entry is found by ``catalog_id``, or by ``path`` and ``version`` (latest when absent or
``"latest"``); ``payload`` (alias ``workload``) overlays the playbook's workload. The orchestrator
creates the execution row, its first events and first commands in one transaction.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel

from noetl.engine import events as ev
from noetl.errors import UsageError
from noetl.server.context import Server, ServerContext
from noetl.server.problems import NotFound
from noetl.store import catalog, events, executions
from noetl.store.ports import CatalogEntry

router = APIRouter(prefix="/api", tags=["executions"])


class ExecuteRequest(BaseModel):
    path: str | None = None
    catalog_id: int | None = None
    version: int | Literal["latest"] | None = None
    payload: dict[str, Any] | None = None
    workload: dict[str, Any] | None = None
    parent_execution_id: int | None = None


@router.post("/execute")
async def execute(body: ExecuteRequest, server: Server) -> dict[str, Any]:
    entry = await _entry(server, body)
    payload = body.payload if body.payload is not None else body.workload
    execution_id = await server.orchestrator.start(
        entry, payload, parent_execution_id=body.parent_execution_id
    )
    async with server.pool.connection() as conn:
        row = await executions.get(conn, execution_id)
        issued = await events.read(conn, execution_id, event_type=ev.COMMAND_ISSUED)
    return {
        "execution_id": str(execution_id),
        "status": row.status if row is not None else "RUNNING",
        "path": entry.path,
        "version": entry.version,
        "catalog_id": str(entry.catalog_id),
        "commands_generated": len(issued),
    }


async def _entry(server: ServerContext, body: ExecuteRequest) -> CatalogEntry:
    if body.catalog_id is None and not body.path:
        raise UsageError("give path (and optionally version) or catalog_id")
    version = None if body.version == "latest" else body.version
    async with server.pool.connection() as conn:
        entry = await catalog.get(conn, catalog_id=body.catalog_id, path=body.path, version=version)
    if entry is None:
        what = (
            body.catalog_id if body.catalog_id is not None else f"{body.path} version {version or 'latest'}"
        )
        raise NotFound(f"playbook {what} not found in the catalog")
    return entry
