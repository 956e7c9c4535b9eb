"""Retention: deleting old executions whole, and only what may go.

An execution may be pruned when it has ended (COMPLETED, FAILED or CANCELLED) before the cutoff and
every export sink's cursor is past all of its events (ARCHITECTURE invariant 9: nothing leaves the
log before every configured sink has it). Its events, commands, stored results and row go together,
a batch of executions per statement, so a prune can stop at any point and leave only whole
executions. Deleting by ``execution_id`` uses the primary key of ``event`` and the ``result``
index; ``command`` has no index on it on purpose (the queue's hot path), so each batch scans it once.
A prune ends with a VACUUM of those tables: their files keep their size, and the space is reused by
new rows, so a database with retention stays the same size once it has reached its window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row, tuple_row

from noetl.store import queries
from noetl.store.db import Connection
from noetl.store.errors import wrap

Q = queries.load("prune")
BATCH = 500
"""Executions deleted per statement."""


@dataclass
class Pruned:
    """What a prune removed (or, dry, would remove)."""

    executions: int = 0
    events: int = 0
    commands: int = 0
    results: int = 0
    held_for_export: int = 0
    """Ended executions old enough that an export sink has not taken yet (kept)."""
    sizes_before: dict[str, int] = field(default_factory=dict)
    sizes_after: dict[str, int] = field(default_factory=dict)

    def add(self, row: dict[str, Any]) -> None:
        for name in ("executions", "events", "commands", "results"):
            setattr(self, name, getattr(self, name) + int(row.get(name) or 0))


@wrap
async def prune(conn: Connection, cutoff: datetime, *, dry_run: bool = False, batch: int = BATCH) -> Pruned:
    """Delete (or with ``dry_run`` count) the executions that ended before ``cutoff`` and that every
    export sink has, batch by batch."""
    found = Pruned(sizes_before=await sizes(conn))
    found.held_for_export = await _scalar(conn, Q["held"], {"cutoff": cutoff})
    after = 0
    while True:
        ids = await _candidates(conn, cutoff, batch, after)
        if not ids:
            break
        if dry_run:
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(Q["count"], {"ids": ids})
                row = await cur.fetchone()
            found.add({**(row or {}), "executions": len(ids)})
            after = ids[-1]
        else:
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(Q["delete"], {"ids": ids})
                row = await cur.fetchone()
            found.add(row or {})
    if found.executions and not dry_run:
        await vacuum(conn)
    found.sizes_after = await sizes(conn)
    return found


@wrap
async def vacuum(conn: Connection) -> None:
    """Make the deleted rows' space reusable now (PostgreSQL keeps the files' size and reuses it)."""
    for table in ("event", "command", "result", "execution"):
        await conn.execute(f"VACUUM (ANALYZE) noetl.{table}")


async def _candidates(conn: Connection, cutoff: datetime, batch: int, after: int) -> list[int]:
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["candidates"], {"cutoff": cutoff, "limit": batch, "after": after})
        return [int(r[0]) for r in await cur.fetchall()]


@wrap
async def sizes(conn: Connection) -> dict[str, int]:
    """On-disk bytes (with indexes and TOAST) of the tables a prune shrinks."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["sizes"])
        return {str(name): int(size) for name, size in await cur.fetchall()}


async def _scalar(conn: Connection, query: Any, params: dict[str, Any]) -> int:
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(query, params)
        row = await cur.fetchone()
    return int(row[0]) if row else 0
