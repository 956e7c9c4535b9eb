"""The queue seen from above: depth for back-pressure, what ``noetl queue`` shows, priority aging.

None of this runs on a worker's claim path: the server's execute endpoint asks :func:`depth_at_least`
before it accepts an execution, ``GET /api/queue`` shows :func:`stats`, and the scheduler leader
runs :func:`age` and :func:`prune_admissions` periodically.
"""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row, tuple_row

from noetl.store import queries
from noetl.store.db import Connection
from noetl.store.errors import wrap

Q = queries.load("backlog")


@wrap
async def depth_at_least(conn: Connection, pool: str, bound: int) -> int:
    """Ready commands of ``pool``, counted up to ``bound`` (cheap however long the queue is)."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["depth_at_least"], {"pool": pool, "bound": bound}, prepare=True)
        row = await cur.fetchone()
    return int(row[0]) if row else 0


@wrap
async def stats(conn: Connection) -> list[dict[str, Any]]:
    """Per pool, priority and concurrency key: ``ready``, ``in_flight``, ``oldest_wait_seconds``."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["stats"])
        return [
            {**row, "ready": int(row["ready"]), "in_flight": int(row["in_flight"])}
            for row in await cur.fetchall()
        ]


@wrap
async def age(conn: Connection, seconds: float) -> int:
    """Raise by one the priority of ready commands that waited ``seconds`` since they were queued or
    last aged; wakes the pools concerned. Returns how many pools had aged commands."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["age"], {"seconds": float(seconds)})
        return cur.rowcount


@wrap
async def prune_admissions(conn: Connection) -> int:
    """Forget admissions of executions that ended (they no longer count against their gate)."""
    cur = await conn.execute(Q["prune_admissions"])
    return cur.rowcount
