"""Execution endpoints: list, detail, events (paginated), status with progress, cancel.

Events page forward by ``since_event_id`` (event ids are the log positions 1, 2, 3, ... of one
execution): a client passes back ``next_since_event_id`` until ``has_more`` is false. The detail
endpoint also accepts upstream's ``page``/``page_size``. Status and progress come from folding the
execution's log (the same ``fold`` as the orchestrator), so they never disagree with the events.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from noetl.engine import state as st
from noetl.engine.events import Event
from noetl.runtime import results
from noetl.server import views
from noetl.server.context import Server, ServerContext
from noetl.server.problems import Conflict, NotFound
from noetl.store import events, executions
from noetl.store.db import Connection
from noetl.store.ports import ExecutionRow

router = APIRouter(prefix="/api/executions", tags=["executions"])

TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED"})


class CancelRequest(BaseModel):
    reason: str | None = None
    cascade: bool = True


@router.get("")
async def list_executions(
    server: Server,
    status: str | None = None,
    path: str | None = None,
    parent_execution_id: int | None = None,
    catalog_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    async with server.pool.connection() as conn:
        rows = await executions.list(
            conn,
            status=status,
            path=path,
            parent=parent_execution_id,
            limit=limit,
            offset=offset,
            catalog_id=catalog_id,
        )
    return {"executions": [views.execution_summary(r) for r in rows], "limit": limit, "offset": offset}


@router.get("/{execution_id}")
async def detail(
    execution_id: int,
    server: Server,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=10, le=500)] = 100,
    since_event_id: Annotated[int, Query(ge=0)] = 0,
    event_type: str | None = None,
    include_events: bool = True,
) -> dict[str, Any]:
    async with server.pool.connection() as conn:
        row = await _row(conn, execution_id)
        out = views.execution_detail(row)
        out["result"] = await results.hydrate_stored(conn, row.result)  # spilled loops (DECISIONS 19)
        if not include_events:
            return out
        # Pages count from since_event_id; page n skips the (n - 1) pages before it.
        wanted = page * page_size
        found = await events.read(
            conn, execution_id, after=since_event_id, limit=wanted + 1, event_type=event_type
        )
        total = await events.count(conn, execution_id)
    chunk = found[(page - 1) * page_size : wanted]
    out["events"] = event_dicts(execution_id, chunk)
    out["pagination"] = {
        "page": page,
        "page_size": page_size,
        "total_events": total,
        "has_more": len(found) > wanted,
        "next_since_event_id": chunk[-1].id if chunk else since_event_id,
    }
    return out


@router.get("/{execution_id}/events")
async def event_page(
    execution_id: int,
    server: Server,
    since_event_id: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    event_type: str | None = None,
) -> dict[str, Any]:
    async with server.pool.connection() as conn:
        await _row(conn, execution_id)
        found = await events.read(
            conn, execution_id, after=since_event_id, limit=limit + 1, event_type=event_type
        )
    chunk = found[:limit]
    return {
        "execution_id": str(execution_id),
        "events": event_dicts(execution_id, chunk),
        "next_since_event_id": chunk[-1].id if chunk else since_event_id,
        "has_more": len(found) > limit,
    }


@router.get("/{execution_id}/status")
async def status(execution_id: int, server: Server) -> dict[str, Any]:
    async with server.pool.connection() as conn:
        row = await _row(conn, execution_id)
        state = await server.folds.state(conn, execution_id)
        playbook = await server.playbooks.get(conn, row.catalog_id) if row.catalog_id is not None else None
        result = await results.hydrate_stored(conn, row.result)
        stalled = await _stalled(conn, execution_id) if row.status == "RUNNING" else []
    total = len(playbook.workflow) if playbook is not None else len(state.steps)
    return {
        "execution_id": str(execution_id),
        "status": row.status,
        "current_step": current_step(state),
        "completed": row.status == "COMPLETED",
        "failed": row.status == "FAILED",
        "is_cancelled": _is_cancelled(row),
        "progress": {"total_steps": total, **step_counts(state)},
        "result": result,
        "error": row.error,
        "stalled": stalled,
        # The Python reference server's fields, read by older clients (REFERENCE §7).
        "completed_steps": list(state.executed),
        "completion_inferred": False,
        "variables": dict(state.variables),
        "start_time": views.timestamp(row.created_at),
        "end_time": views.timestamp(row.completed_at),
        "duration_seconds": _duration(row),
    }


STALL_SECONDS = 2.0
"""A ready command waiting this long is checked for a stall (no live worker could ever take it)."""


async def _stalled(conn: Connection, execution_id: int) -> list[dict[str, Any]]:
    """Ready commands of the execution that no live worker can take, and why (``runtime.stalls``)."""
    from noetl.runtime import stalls
    from noetl.server.workers import STALE_AFTER_SECONDS
    from noetl.store import commands, resources, workers

    waiting = await commands.waiting(conn, execution_id, STALL_SECONDS)
    if not waiting:
        return []
    live = [w for w in await workers.list(conn) if (w.get("heartbeat_age") or 0) <= STALE_AFTER_SECONDS]
    global_names = {r["name"] for r in await resources.list(conn)}
    found = []
    for command in waiting:
        why = stalls.reasons(command["pool"], command["needs"], live, global_names)
        if why:
            found.append(
                {
                    "command_id": command["command_id"],
                    "step": command["step"],
                    "pool": command["pool"],
                    "waiting_seconds": round(float(command["waited"]), 1),
                    "reasons": why,
                }
            )
    return found


@router.post("/{execution_id}/cancel")
async def cancel(execution_id: int, server: Server, body: CancelRequest | None = None) -> dict[str, Any]:
    request = body or CancelRequest()
    async with server.pool.connection() as conn:
        row = await _row(conn, execution_id)
        _ensure_running(row)
        targets = await _running_tree(conn, execution_id) if request.cascade else [execution_id]
    reason = request.reason or "cancelled by request"
    if not await server.orchestrator.cancel(execution_id, reason, cascade=request.cascade):
        _ensure_running(await _fetch(server, execution_id))
    after = await _fetch(server, execution_id)
    return {
        "execution_id": str(execution_id),
        "status": after.status,
        "cancelled": [str(t) for t in targets],
    }


@router.get("/{execution_id}/cancellation-check")
async def cancellation_check(execution_id: int, server: Server) -> dict[str, Any]:
    row = await _fetch(server, execution_id)
    return {"execution_id": str(execution_id), "is_cancelled": _is_cancelled(row), "status": row.status}


def current_step(state: st.State) -> str | None:
    """The step most recently entered that still runs, else the last one that finished."""
    running = [name for name, step in state.steps.items() if step.status == st.RUNNING]
    if running:
        return running[-1]
    return state.executed[-1] if state.executed else None


def step_counts(state: st.State) -> dict[str, int]:
    statuses = [step.status for step in state.steps.values()]
    return {
        "completed_steps": statuses.count(st.COMPLETED),
        "running_steps": statuses.count(st.RUNNING),
        "failed_steps": statuses.count(st.FAILED),
        "skipped_steps": statuses.count(st.SKIPPED),
        "cancelled_steps": statuses.count(st.CANCELLED),
    }


def _duration(row: ExecutionRow) -> float | None:
    if row.created_at is None or row.completed_at is None:
        return None
    return (row.completed_at - row.created_at).total_seconds()


def _is_cancelled(row: ExecutionRow) -> bool:
    return row.status == "CANCELLED" or row.cancel_requested


def _ensure_running(row: ExecutionRow) -> None:
    if row.status in TERMINAL:
        raise Conflict(
            f"execution {row.execution_id} already finished ({row.status})",
            code="already_terminal",
            status=row.status,
        )


async def _row(conn: Connection, execution_id: int) -> ExecutionRow:
    row = await executions.get(conn, execution_id)
    if row is None:
        raise NotFound(f"execution {execution_id} not found")
    return row


async def _fetch(server: ServerContext, execution_id: int) -> ExecutionRow:
    async with server.pool.connection() as conn:
        return await _row(conn, execution_id)


async def _running_tree(conn: Connection, execution_id: int) -> list[int]:
    """The execution and its descendants that still run: what a cascading cancel reaches."""
    tree = [execution_id, *await executions.children(conn, execution_id, recursive=True)]
    running = []
    for member in tree:
        row = await executions.get(conn, member)
        if row is not None and row.status not in TERMINAL:
            running.append(member)
    return running


def event_dicts(execution_id: int, items: list[Event]) -> list[dict[str, Any]]:
    return [e.to_dict(str(execution_id)) for e in items]
