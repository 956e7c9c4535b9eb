"""The command queue: insert, claim, heartbeat, report, release, reap, record, cancel.

A command moves ``ready -> leased -> done | failed`` and is then ``recorded`` by the orchestrator,
or becomes ``cancelled``. ``attempt`` counts claims: a claim adds one, a graceful release gives it
back, an expired lease keeps it. Completing a command needs the current lease (same worker, same
attempt), so a worker whose lease was lost or reaped cannot record a result twice: at-least-once
execution, exactly-once recording (ARCHITECTURE invariant 3).

Each function is one statement. ``insert``, ``release`` and ``reap`` notify ``noetl_commands``
(payload: pool) and ``report`` notifies ``noetl_results`` (payload: execution id) in that same
statement, so a notification goes out exactly when its change commits, once per pool or execution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from psycopg.rows import class_row, dict_row, tuple_row

from noetl.store import jsonb, queries
from noetl.store.db import Connection
from noetl.store.errors import wrap
from noetl.store.ports import Lease, NewCommand, PendingResult, Report

Q = queries.load("commands")


def _columns(commands: Sequence[NewCommand]) -> dict[str, Any]:
    return {
        "command_ids": [c.command_id for c in commands],
        "execution_ids": [c.execution_id for c in commands],
        "catalog_ids": [c.catalog_id for c in commands],
        "steps": [c.step for c in commands],
        "idx": [c.index for c in commands],
        "pools": [c.pool for c in commands],
        "priorities": [c.priority for c in commands],
        "max_attempts": [c.max_attempts for c in commands],
        "contexts": [jsonb.param(c.context) for c in commands],
        "concurrency_keys": [c.concurrency_key for c in commands],
        "needs": [None if c.needs is None else jsonb.param(c.needs) for c in commands],
    }


@wrap
async def insert(conn: Connection, commands: Sequence[NewCommand]) -> None:
    """Enqueue ``commands`` as ready, in list order (which is their age order within a priority)."""
    if not commands:
        return
    await conn.execute(Q["insert"], _columns(commands), prepare=True)


@wrap
async def claim(
    conn: Connection,
    worker_id: str,
    pools: Sequence[str],
    limit: int,
    lease_seconds: float,
    capacity: Mapping[str, int] | None = None,
) -> list[Lease]:
    """Lease up to ``limit`` ready commands of ``pools``: highest priority first, concurrency keys
    taking turns within a priority, then oldest first. A command that needs resources gets leased
    only if they fit: worker resources in ``capacity`` (less what this worker holds already), global
    ones in their capacity; likewise its key limit and its playbook's execution limit."""
    if limit <= 0 or not pools:
        return []
    params = {
        "worker_id": worker_id,
        "pools": list(pools),
        "limit": limit,
        "lease_seconds": float(lease_seconds),
        "capacity": jsonb.param(dict(capacity or {})),
    }
    async with conn.cursor(row_factory=class_row(Lease)) as cur:
        await cur.execute(Q["claim"], params, prepare=True)
        return await cur.fetchall()


@wrap
async def heartbeat(
    conn: Connection, worker_id: str, command_ids: Sequence[str], lease_seconds: float
) -> set[str]:
    """Extend the leases ``worker_id`` still holds; return the ids it lost (cancelled, reaped, done)."""
    if not command_ids:
        return set()
    params = {"worker_id": worker_id, "command_ids": list(command_ids), "lease_seconds": float(lease_seconds)}
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["heartbeat"], params, prepare=True)
        return {row[0] for row in await cur.fetchall()}


@wrap
async def report(
    conn: Connection, worker_id: str, command_id: str, attempt: int, ok: bool, events: list[dict[str, Any]]
) -> bool:
    """Complete a leased command with the events it produced; False (and no change) when the lease is
    no longer this worker's ``attempt``: the command was reaped, cancelled or already reported."""
    params = {
        "worker_id": worker_id,
        "command_id": command_id,
        "attempt": attempt,
        "ok": ok,
        "outcome": jsonb.param(events),
    }
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["report"], params, prepare=True)
        return cur.rowcount == 1


@wrap
async def report_many(conn: Connection, reports: Sequence[Report]) -> set[str]:
    """:func:`report` for a batch in one statement; returns the ids whose report was accepted."""
    if not reports:
        return set()
    params = {
        "worker_ids": [r.worker_id for r in reports],
        "command_ids": [r.command_id for r in reports],
        "attempts": [r.attempt for r in reports],
        "oks": [r.ok for r in reports],
        "outcomes": [jsonb.param(r.events) for r in reports],
    }
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["report_many"], params, prepare=True)
        return {row[0] for row in await cur.fetchall()}


@wrap
async def notify_results(conn: Connection, execution_ids: Sequence[int]) -> None:
    """Wake the orchestrator for these executions (when the transaction commits)."""
    if execution_ids:
        await conn.execute(Q["notify_results"], {"execution_ids": list(execution_ids)}, prepare=True)


@wrap
async def release(conn: Connection, worker_id: str, command_ids: Sequence[str]) -> int:
    """Give leased commands back (graceful shutdown) without using up an attempt; returns how many."""
    if not command_ids:
        return 0
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["release"], {"worker_id": worker_id, "command_ids": list(command_ids)})
        return cur.rowcount


@wrap
async def reap(conn: Connection, limit: int = 1000) -> int:
    """Handle up to ``limit`` expired leases: ready again while attempts remain, else failed with a
    ``lease_expired`` command.failed outcome. Each command queued again gets a ``command.reissued``
    event in its execution's log (naming the worker that lost it). One transaction (a savepoint
    when the caller has one open); returns how many leases were handled."""
    async with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["expired_executions"], {"limit": limit})
        execution_ids = [row[0] for row in await cur.fetchall()]
        if not execution_ids:
            return 0
        await cur.execute(Q["lock_executions"], {"execution_ids": execution_ids})
        await cur.execute(Q["reap"], {"limit": limit, "execution_ids": execution_ids})
        row = await cur.fetchone()
        assert row is not None, "a SELECT of aggregates gave no row"
        handled, reissued = row
        if reissued:
            await cur.execute(Q["reissued"], {"rows": jsonb.dumps(reissued)})
        return int(handled)


@wrap
async def pending_results(conn: Connection, execution_id: int) -> list[PendingResult]:
    """Reported outcomes of the execution not recorded yet, in the order they were reported."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["pending_results"], {"execution_id": execution_id}, prepare=True)
        return [PendingResult(*row) for row in await cur.fetchall()]


@wrap
async def pending_results_many(
    conn: Connection, execution_ids: Sequence[int]
) -> dict[int, list[PendingResult]]:
    """:func:`pending_results` of several executions in one query (executions with none are absent)."""
    found: dict[int, list[PendingResult]] = {}
    if not execution_ids:
        return found
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["pending_results_many"], {"execution_ids": list(execution_ids)}, prepare=True)
        for execution_id, *rest in await cur.fetchall():
            found.setdefault(execution_id, []).append(PendingResult(*rest))
    return found


@wrap
async def mark_recorded(conn: Connection, command_ids: Sequence[str]) -> int:
    """Mark reported outcomes as folded into the event log; returns how many changed."""
    if not command_ids:
        return 0
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["mark_recorded"], {"command_ids": list(command_ids)}, prepare=True)
        return cur.rowcount


@wrap
async def cancel(conn: Connection, execution_id: int) -> list[str]:
    """Cancel the execution's ready and leased commands; returns their ids, oldest first. Workers
    holding one learn it at their next heartbeat and their report is dropped."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["cancel"], {"execution_id": execution_id})
        return [row[0] for row in await cur.fetchall()]


@wrap
async def suspend(
    conn: Connection,
    worker_id: str,
    command_id: str,
    attempt: int,
    *,
    wait: Mapping[str, Any],
    ready: bool,
    seconds: float | None,
) -> str | None:
    """End the run of a leased command that waits for ``wait``: ``waiting`` (no lease, no worker, its
    attempt given back, ``wake_at`` in ``seconds`` when given), or ``ready`` at once when ``ready``.
    Returns the new status, or None (no change) when the lease is no longer this worker's."""
    params = {
        "worker_id": worker_id,
        "command_id": command_id,
        "attempt": attempt,
        "wait": jsonb.param(dict(wait)),
        "ready": ready,
        "seconds": seconds,
    }
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["suspend"], params, prepare=True)
        row = await cur.fetchone()
    return None if row is None else str(row[0])


@wrap
async def wake_waiters(conn: Connection, child_execution_ids: Sequence[int]) -> None:
    """Make ready the waiting commands that called these child executions (which just ended)."""
    if child_execution_ids:
        params = {"execution_ids": list(child_execution_ids)}
        await conn.execute(Q["wake_waiters"], params, prepare=True)


@wrap
async def wake_due(conn: Connection, limit: int = 1000) -> int:
    """Make ready the waiting commands whose wait timed out or whose child ended; returns how many."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["wake_due"], {"limit": limit})
        return cur.rowcount


@wrap
async def depth(conn: Connection) -> dict[str, int]:
    """Ready commands per pool."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["depth"])
        return {pool: int(n) for pool, n in await cur.fetchall()}


@wrap
async def waiting(conn: Connection, execution_id: int, seconds: float) -> list[dict[str, Any]]:
    """Up to 20 ready commands of the execution that have waited ``seconds`` or more, oldest first."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["waiting"], {"execution_id": execution_id, "seconds": float(seconds)})
        return await cur.fetchall()
