"""The read APIs behind the web UI, and re-runs.

* ``GET /api/executions/search`` - a filtered keyset page of executions, with warning and stall
  markers; ``next_cursor`` is the last id of the page (pass it back as ``cursor``).
* ``GET /api/executions/changes`` - SSE of list changes (:class:`noetl.server.live.ListFeed`).
* ``GET /api/executions/{id}/snapshot`` - the execution, its playbook's graph and per-step counts,
  its children and parent, its re-run lineage, its stalled commands, and ``last_event_id``: the
  cursor its stream continues from.
* ``GET /api/executions/{id}/stream?after=N`` - SSE of new events (``Last-Event-ID`` honoured).
* ``GET /api/executions/{id}/timeline`` - its commands (steps, iterations, attempts) with times.
* ``GET /api/executions/{id}/log`` - a page of its events, newest first, filtered.
* ``GET /api/executions/{id}/steps/{step}`` - one step: definition, outcomes, errors first.
* ``POST /api/catalog/graph`` - a catalog entry's graph (``path``, ``version``).
* ``POST /api/executions/{id}/rerun`` - a new execution of the same catalog entry with the same
  inputs; with ``from_step``, starting at that step (see :func:`resume_from`).

``path_glob`` (repeatable) restricts the list and the change stream to paths matching one of the
patterns: the gateway adds the principal's patterns, so paging stays exact for a restricted viewer.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from noetl.dsl.model import Playbook
from noetl.engine import events as ev
from noetl.engine import state as st
from noetl.errors import UsageError
from noetl.server import auth, live, views
from noetl.server import executions as execution_api
from noetl.server.context import Server, ServerContext
from noetl.server.problems import NotFound
from noetl.store import browse, catalog, events, executions
from noetl.store.db import Connection
from noetl.store.ports import ExecutionRow

router = APIRouter(prefix="/api/executions", tags=["ui"])
catalog_router = APIRouter(prefix="/api/catalog", tags=["ui"])

STATUSES = frozenset({"RUNNING", "COMPLETED", "FAILED", "CANCELLED"})
WAITING_WARN_SECONDS = 10.0
QUIET_WARN_SECONDS = 300.0
TIMELINE_PER_STEP = 300
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class RerunRequest(BaseModel):
    from_step: str | None = None


class GraphRequest(BaseModel):
    path: str
    version: int | None = None


def _filters(
    status: list[str] | None,
    path_prefix: str | None,
    path_glob: list[str] | None,
    since: datetime | None,
    until: datetime | None,
    parent_execution_id: int | None,
    q: str | None,
) -> browse.Filters:
    statuses = tuple(s.upper() for s in status or () if s)
    unknown = sorted(set(statuses) - STATUSES)
    if unknown:
        raise UsageError(f"unknown status {unknown[0]!r}: use one of {', '.join(sorted(STATUSES))}")
    return browse.Filters(
        statuses=statuses,
        prefix=path_prefix or None,
        globs=tuple(path_glob or ()),
        since=since,
        until=until,
        parent=parent_execution_id,
        text=q or None,
    )


def visible_globs(request: Request, asked: list[str] | None) -> tuple[str, ...]:
    """The path patterns a list may show: the caller's own when the gateway says it is limited to
    some paths (whatever the query asked), else the ones asked for."""
    if request.headers.get(auth.PATHS_HEADER) is None:  # not limited by the gateway
        return tuple(asked or ())
    allowed = auth.caller(request).paths
    if "*" in allowed:
        return tuple(asked or ())
    return allowed or ("",)  # no paths at all: a pattern no path matches


@router.get("/search")
async def search(
    request: Request,
    server: Server,
    status: Annotated[list[str] | None, Query()] = None,
    path_prefix: str | None = None,
    path_glob: Annotated[list[str] | None, Query()] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    parent_execution_id: int | None = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    cursor: int | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    globs = list(visible_globs(request, path_glob))
    filters = _filters(status, path_prefix, globs, since, until, parent_execution_id, q)
    async with server.pool.connection() as conn:
        rows = await browse.search(conn, filters, cursor=cursor, limit=limit + 1)
        page = rows[:limit]
        marks = await browse.markers(conn, [r.execution_id for r in page if r.status == "RUNNING"])
        errors = await browse.markers(conn, [r.execution_id for r in page if r.status != "RUNNING"])
    items = []
    for row in page:
        item = live.summary(row)
        found = {**errors.get(row.execution_id, {}), **marks.get(row.execution_id, {})}
        item["markers"] = markers_of(row, found)
        items.append(item)
    return {
        "executions": items,
        "next_cursor": str(page[-1].execution_id) if len(rows) > limit else None,
        "limit": limit,
    }


def markers_of(row: ExecutionRow, found: dict[str, Any]) -> list[dict[str, str]]:
    """Warning and stall markers of one list row: failed calls and template warnings (retried or
    tolerated), a command waiting for a worker, a running execution with no progress, a pending
    cancel."""
    out = []
    if found.get("errors"):
        out.append({"kind": "warning", "text": f"{found['errors']} failed call(s)"})
    if found.get("warnings"):
        out.append({"kind": "warning", "text": f"{found['warnings']} template warning(s)"})
    if row.status == "RUNNING":
        waited = float(found.get("waiting") or 0)
        if waited >= WAITING_WARN_SECONDS:
            ready = found.get("ready", 1)
            out.append({"kind": "stall", "text": f"{ready} command(s) waiting {waited:.0f} s for a worker"})
        if row.cancel_requested:
            out.append({"kind": "warning", "text": "cancel requested"})
        if row.updated_at is not None and not waited:
            quiet = (datetime.now(row.updated_at.tzinfo) - row.updated_at).total_seconds()
            if quiet >= QUIET_WARN_SECONDS:
                out.append({"kind": "stall", "text": f"no progress for {quiet:.0f} s"})
    return out


@router.get("/changes")
async def changes(
    request: Request,
    path_prefix: str | None = None,
    path_glob: Annotated[list[str] | None, Query()] = None,
) -> StreamingResponse:
    feed: live.ListFeed = request.app.state.ui_list_feed
    matcher = live.list_matcher(path_prefix or None, visible_globs(request, path_glob))
    return StreamingResponse(feed.stream(matcher), media_type="text/event-stream", headers=SSE_HEADERS)


@router.get("/{execution_id}/snapshot")
async def snapshot(execution_id: int, request: Request, server: Server) -> dict[str, Any]:
    async with server.pool.connection() as conn:
        row = await _row(conn, execution_id)
        playbook = await _playbook(server, conn, row)
        counts = await browse.step_counts(conn, execution_id)
        first = await browse.first_event(conn, execution_id)
        globs = visible_globs(request, None)  # children may run playbooks of other paths
        children = await browse.search(
            conn, browse.Filters(parent=execution_id, globs=globs), cursor=None, limit=200
        )
        stalled = await execution_api._stalled(conn, execution_id) if row.status == "RUNNING" else []
        entry = await catalog.get(conn, catalog_id=row.catalog_id) if row.catalog_id is not None else None
    return {
        "execution": {**views.execution_detail(row), "cancel_reason": row.cancel_reason},
        "version": entry.version if entry is not None else None,
        "graph": graph(playbook) if playbook is not None else {"nodes": [], "edges": []},
        "steps": {c["step"]: _jsonable(c) for c in counts},
        "children": [live.summary(c) for c in reversed(children)],
        "rerun_of": first.get("rerun_of"),
        "resume": _resume_summary(first.get("resume")),
        "stalled": stalled,
        "last_event_id": row.last_event_id,
    }


def graph(playbook: Playbook) -> dict[str, Any]:
    """The playbook's steps and arcs as nodes and edges (the page lays them out)."""
    nodes, edges = [], []
    for step in playbook.workflow:
        nodes.append(
            {
                "id": step.name,
                "kinds": [task.kind for task in step.tool],
                "desc": step.desc,
                "loop": {"mode": step.loop.mode, "iterator": step.loop.iterator} if step.loop else None,
                "entry": step.name == playbook.entry_step,
            }
        )
        for arc in step.next.arcs if step.next is not None else ():
            edges.append({"from": step.name, "to": arc.step, "when": arc.when})
    return {"nodes": nodes, "edges": edges}


@catalog_router.post("/graph")
async def catalog_graph(body: GraphRequest, server: Server) -> dict[str, Any]:
    """The graph of a catalog entry (``path``, latest ``version`` when absent)."""
    async with server.pool.connection() as conn:
        entry = await catalog.get(conn, path=body.path, version=body.version)
        if entry is None:
            version = body.version or "latest"
            raise NotFound(f"playbook {body.path} version {version} not found in the catalog")
        return graph(await server.playbooks.get(conn, entry.catalog_id))


def _resume_summary(resume: Any) -> dict[str, Any] | None:
    if not isinstance(resume, dict):
        return None
    return {"from_step": resume.get("from_step"), "carried": sorted((resume.get("results") or {}).keys())}


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (int(v) if isinstance(v, int) else v) for k, v in row.items()}


@router.get("/{execution_id}/stream")
async def stream(
    execution_id: int,
    request: Request,
    after: Annotated[int, Query(ge=0)] = 0,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    feeds: live.ExecutionFeeds = request.app.state.ui_feeds
    if last_event_id and last_event_id.isdigit():
        after = max(after, int(last_event_id))
    return StreamingResponse(
        feeds.stream(execution_id, after), media_type="text/event-stream", headers=SSE_HEADERS
    )


@router.get("/{execution_id}/timeline")
async def timeline(execution_id: int, server: Server) -> dict[str, Any]:
    async with server.pool.connection() as conn:
        row = await _row(conn, execution_id)
        commands = await browse.timeline(conn, execution_id, TIMELINE_PER_STEP)
    return {
        "execution_id": str(execution_id),
        "started": row.created_at.timestamp() if row.created_at else None,
        "ended": row.completed_at.timestamp() if row.completed_at else None,
        "per_step_limit": TIMELINE_PER_STEP,
        "commands": [_jsonable(c) for c in commands],
    }


@router.get("/{execution_id}/log")
async def event_log(
    execution_id: int,
    server: Server,
    before: int | None = None,
    after: int | None = None,
    event_type: str | None = None,
    step: str | None = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    async with server.pool.connection() as conn:
        await _row(conn, execution_id)
        found = await browse.log(
            conn,
            execution_id,
            before=before,
            after=after,
            event_type=event_type,
            step=step,
            text=q,
            limit=limit,
        )
    return {
        "events": [e.to_dict(str(execution_id)) for e in found],
        "next_before": found[-1].id if len(found) == limit else None,
    }


@router.get("/{execution_id}/steps/{step}")
async def step_detail(execution_id: int, step: str, server: Server) -> dict[str, Any]:
    async with server.pool.connection() as conn:
        row = await _row(conn, execution_id)
        playbook = await _playbook(server, conn, row)
        outcomes = await browse.step_outcomes(conn, execution_id, step, 200)
    definition = _step_definition(playbook, step) if playbook is not None else None
    return {
        "execution_id": str(execution_id),
        "step": step,
        "definition": definition,
        "outcomes": [e.to_dict(str(execution_id)) for e in outcomes],
    }


def _step_definition(playbook: Playbook, name: str) -> dict[str, Any] | None:
    step = playbook.steps.get(name)
    if step is None:
        return None
    return {
        "desc": step.desc,
        "loop": None if step.loop is None else {"in": step.loop.in_, "iterator": step.loop.iterator},
        "tasks": [
            {
                "name": task.name,
                "kind": task.kind,
                "input": dict(task.input),
                "config": dict(task.config),
                "rules": [{"when": r.when, "do": r.do, "attempts": r.attempts} for r in task.rules],
            }
            for task in step.tool
        ],
        "next": [{"step": a.step, "when": a.when} for a in step.next.arcs] if step.next else [],
    }


@router.post("/{execution_id}/rerun")
async def rerun(
    execution_id: int, server: Server, http: Request, body: RerunRequest | None = None
) -> dict[str, Any]:
    """Start the execution again: same catalog entry (same version), same inputs. With
    ``from_step``, the new execution starts at that step and the steps before it do not run: their
    results and the variables as they stood when the original first entered that step are carried
    over from the original's log (``resume`` in the new execution's first event)."""
    request = body or RerunRequest()
    async with server.pool.connection() as conn:
        row = await _row(conn, execution_id)
        if row.catalog_id is None:
            raise UsageError(f"execution {execution_id} has no catalog entry to run again")
        entry = await catalog.get(conn, catalog_id=row.catalog_id)
        if entry is None:
            raise NotFound(f"catalog entry {row.catalog_id} of execution {execution_id} not found")
        lineage: dict[str, Any] = {"rerun_of": str(execution_id)}
        if request.from_step:
            playbook = await server.playbooks.get(conn, row.catalog_id)
            lineage["resume"] = await resume_from(conn, playbook, execution_id, request.from_step)
    new_id = await server.orchestrator.start(
        entry, row.payload, lineage=lineage, principal=auth.recorded(http)
    )
    return {
        "execution_id": str(new_id),
        "rerun_of": str(execution_id),
        "from_step": request.from_step,
        "path": entry.path,
        "version": entry.version,
    }


async def resume_from(conn: Connection, playbook: Playbook, execution_id: int, step: str) -> dict[str, Any]:
    """What a re-run from ``step`` starts with: the original's state just before it first entered
    ``step`` - the results of the steps that had finished and the variables - folded from its log."""
    if step not in playbook.steps:
        known = ", ".join(playbook.steps)
        raise UsageError(f"step {step!r} is not in playbook {playbook.path} (steps: {known})")
    log = await events.read(conn, execution_id)
    prefix = []
    for event in log:
        if event.name == ev.STEP_ENTER and event.step == step:
            break
        prefix.append(event)
    else:
        raise UsageError(f"execution {execution_id} never reached step {step!r}: re-run it from the start")
    state = await asyncio.to_thread(st.fold, prefix)
    return {"from_step": step, "results": dict(state.results), "variables": dict(state.variables)}


async def _row(conn: Connection, execution_id: int) -> ExecutionRow:
    row = await executions.get(conn, execution_id)
    if row is None:
        raise NotFound(f"execution {execution_id} not found")
    return row


async def _playbook(server: ServerContext, conn: Connection, row: ExecutionRow) -> Playbook | None:
    if row.catalog_id is None:
        return None
    return await server.playbooks.get(conn, row.catalog_id)
