"""Writing one orchestration decision: one statement, one round trip (``sql/decisions.sql``).

The orchestrator (on the server, or on a worker right after its report) calls :func:`write` with
the execution's lock held, in the transaction that read the outcomes it folded (ARCHITECTURE
invariant 2). Commands listed in ``leased_to`` go in leased to that worker (attempt 1); the others
go in ready, and each pool with ready ones is notified once when the transaction commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from noetl.engine.events import Event
from noetl.store import jsonb, queries
from noetl.store.db import Connection
from noetl.store.errors import wrap
from noetl.store.ports import ExecutionRow, NewCommand, PendingResult, Report

Q = queries.load("decisions")
OPEN_WAITING = Q["open"].replace("FOR UPDATE SKIP LOCKED", "FOR UPDATE")
"""``open`` that waits for locks other transactions hold instead of skipping those executions."""


@dataclass(frozen=True, slots=True)
class Projection:
    """Where the execution row moves: status and last event id; result and error when given."""

    status: str
    last_event_id: int
    result: Any = None
    error: dict[str, Any] | None = None
    final: bool = False
    """Set ``result`` and ``error`` (the execution ended); otherwise they keep their values."""


@dataclass(slots=True)
class Opened:
    """What :func:`open` found: accepted report ids, the locked executions, their outcomes to
    record (the accepted reports of locked executions last), and which of those are recorded
    already (the reports themselves: ``open`` marked them)."""

    accepted: set[str]
    rows: list[ExecutionRow]
    pending: dict[int, list[PendingResult]]
    recorded: set[str]
    busy: set[int] = field(default_factory=set)
    """Wanted executions still RUNNING whose lock another transaction held (worth a retry); an
    execution that is no longer RUNNING is in neither ``rows`` nor ``busy``."""


@wrap
async def open(
    conn: Connection, execution_ids: Sequence[int], reports: Sequence[Report] = (), *, wait: bool = False
) -> Opened:
    """Lock the RUNNING executions among ``execution_ids`` that no other transaction holds, report
    ``reports`` (without notifying; recorded at once for the locked executions) and read the
    outcomes waiting to be recorded for the locked executions - one statement.

    In a transaction (the locks last until it ends, and the reports are recorded only if the
    caller appends their events before it commits)."""
    rows_in = [
        {
            "worker_id": r.worker_id,
            "command_id": r.command_id,
            "attempt": r.attempt,
            "ok": r.ok,
            "outcome": r.events,
        }
        for r in reports
    ]
    params = {"reports": jsonb.dumps(rows_in), "execution_ids": sorted(set(execution_ids))}
    cur = await conn.execute(OPEN_WAITING if wait else Q["open"], params, prepare=True)
    row = await cur.fetchone()
    assert row is not None, "a SELECT of aggregates gave no row"
    accepted_ids, locked, waiting, busy = row
    rows = [ExecutionRow(**item) for item in locked]
    pending: dict[int, list[PendingResult]] = {}
    for execution_id, command_id, status, outcome in waiting:
        pending.setdefault(execution_id, []).append(PendingResult(command_id, status, outcome))
    accepted = set(accepted_ids)
    held = {r.execution_id for r in rows}
    recorded: set[str] = set()
    for report in reports:
        if report.command_id in accepted and report.execution_id in held:
            status = "done" if report.ok else "failed"
            pending.setdefault(report.execution_id, []).append(
                PendingResult(report.command_id, status, report.events)
            )
            recorded.add(report.command_id)
    return Opened(accepted, rows, pending, recorded, {int(i) for i in busy})


@wrap
async def write(
    conn: Connection,
    execution_id: int,
    events: Sequence[Event],
    commands: Sequence[NewCommand],
    recorded: Sequence[str],
    projection: Projection,
    *,
    leased: frozenset[str] = frozenset(),
    worker_id: str | None = None,
    lease_seconds: float = 60.0,
) -> None:
    """Append ``events`` (their ids as given), enqueue ``commands`` (those in ``leased`` leased to
    ``worker_id``), mark ``recorded`` outcomes recorded and move the execution row, in one statement."""
    event_rows = [
        {
            "event_id": e.id,
            "event_type": e.name,
            "step": e.step,
            "command_id": e.command_id,
            "data": e.data,
            "at": float(e.at),
        }
        for e in events
    ]
    command_rows = [
        {
            "n": n,
            "command_id": c.command_id,
            "catalog_id": c.catalog_id,
            "step": c.step,
            "idx": c.index,
            "pool": c.pool,
            "priority": c.priority,
            "max_attempts": c.max_attempts,
            "context": c.context,
            "leased": c.command_id in leased,
            "concurrency_key": c.concurrency_key,
            "needs": c.needs,
        }
        for n, c in enumerate(commands)
    ]
    params = {
        "execution_id": execution_id,
        "events": jsonb.dumps(event_rows),
        "commands": jsonb.dumps(command_rows),
        "recorded": list(recorded),
        "worker_id": worker_id,
        "lease_seconds": float(lease_seconds),
        "status": projection.status,
        "last_event_id": projection.last_event_id,
        "set_result": projection.final,
        "result": jsonb.param(projection.result) if projection.final else None,
        "set_error": projection.final,
        "error": jsonb.param(projection.error) if projection.final and projection.error is not None else None,
    }
    await conn.execute(Q["write"], params, prepare=True)
