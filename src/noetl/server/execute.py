"""``POST /api/execute``: start an execution of a catalog entry.

The entry is found by ``catalog_id``, or by ``path`` and ``version`` (latest when absent or
``"latest"``); ``payload`` (alias ``workload``) overlays the playbook's workload; ``priority``
replaces the playbook's ``executor.spec.priority``. The orchestrator creates the execution row, its
first events and first commands in one transaction.

Back-pressure: when the pool of the entry step already holds ``max_queue_depth`` ready commands,
the request is refused with 429 and ``Retry-After`` before anything is stored, so an accepted
execution is never dropped later for lack of room.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from noetl.engine import events as ev
from noetl.errors import UsageError
from noetl.runtime import authz, inputs, placement
from noetl.server import auth
from noetl.server.context import Server, ServerContext
from noetl.server.problems import NotFound
from noetl.store import backlog, catalog, events, executions
from noetl.store.ports import CatalogEntry
from noetl.telemetry import traces

router = APIRouter(prefix="/api", tags=["executions"])


class ExecuteRequest(BaseModel):
    path: str | None = None
    catalog_id: int | None = None
    version: int | Literal["latest"] | None = None
    payload: dict[str, Any] | None = None
    workload: dict[str, Any] | None = None
    parent_execution_id: int | None = None
    priority: int | None = None


@router.post("/execute")
async def execute(
    body: ExecuteRequest,
    server: Server,
    request: Request,
    traceparent: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    entry = await _entry(server, body)
    principal = auth.recorded(request)
    await _authorized(server, principal, entry, body.parent_execution_id)
    payload = body.payload if body.payload is not None else body.workload
    await check_payload(server, entry, payload)
    await admit(server, entry)
    async with server.pool.connection() as conn:  # parsed off the event loop (a big playbook takes a while)
        playbook = await server.playbooks.get(conn, entry.catalog_id)
    execution_id = await server.orchestrator.start(
        entry,
        payload,
        parent_execution_id=body.parent_execution_id,
        priority=body.priority,
        principal=principal,
        playbook=playbook,
        lineage=traces.lineage(traceparent),
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


async def check_payload(server: ServerContext, entry: CatalogEntry, payload: dict[str, Any] | None) -> None:
    """422 naming the field when the payload does not fit the playbook's input schema."""
    async with server.pool.connection() as conn:
        playbook = await server.playbooks.get(conn, entry.catalog_id)
    inputs.validate_payload(playbook, payload, entry.content)


async def admit(server: ServerContext, entry: CatalogEntry) -> None:
    """429 with ``Retry-After`` when the entry step's pool is at its queue bound."""
    if server.settings.max_queue_depth <= 0 and not server.settings.queue_depth_by_pool:
        return
    async with server.pool.connection() as conn:
        playbook = await server.playbooks.get(conn, entry.catalog_id)
        pool = placement.pool(playbook, playbook.steps[playbook.entry_step], server.orchestrator.kind_pools)
        bound = server.settings.queue_bound(pool)
        if bound <= 0:
            return
        depth = await backlog.depth_at_least(conn, pool, bound)
    if depth >= bound:
        retry = server.settings.retry_after_seconds
        raise HTTPException(
            429,
            f"pool '{pool}' has {depth} commands waiting (the bound is {bound}); retry in {retry} s",
            headers={"Retry-After": str(retry)},
        )


async def _authorized(
    server: ServerContext, principal: dict[str, Any] | None, entry: CatalogEntry, parent: int | None
) -> None:
    """The entry, and the parent execution when one is named, must be within the principal's paths
    (the gateway decided so already; this holds for any other holder of the service token too)."""
    authz.check(principal, entry.path, "playbook")
    if parent is None:
        return
    async with server.pool.connection() as conn:
        row = await executions.get(conn, parent)
    if row is None:
        raise NotFound(f"parent execution {parent} not found")
    authz.check(principal, row.path, "parent execution of")


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
    if body.catalog_id is not None and body.path and body.path != entry.path:
        raise UsageError(
            f"catalog_id {body.catalog_id} is '{entry.path}', not '{body.path}': give one or the other",
            field="path",
        )
    return entry
