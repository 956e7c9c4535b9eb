"""The worker registry (table ``runtime``): who is running, on which pools, alive since when.

Workers register on start, heartbeat while they run and deregister on a clean exit; a worker that
vanished shows a growing ``heartbeat_age``. Leases, not this registry, decide who runs what.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

from psycopg.rows import dict_row, tuple_row

from noetl.store import jsonb, queries
from noetl.store.db import Connection
from noetl.store.errors import wrap

Q = queries.load("workers")


@wrap
async def register(
    conn: Connection,
    worker_id: str,
    name: str,
    pools: Sequence[str],
    capacity: int | None,
    hostname: str | None,
    pid: int | None,
    meta: dict[str, Any] | None = None,
) -> None:
    """Add the worker, or refresh it when ``worker_id`` is already registered."""
    params = {
        "worker_id": worker_id,
        "name": name,
        "pools": builtins.list(pools),
        "capacity": capacity,
        "hostname": hostname,
        "pid": pid,
        "meta": jsonb.param(meta or {}),
    }
    await conn.execute(Q["register"], params)


@wrap
async def heartbeat(conn: Connection, worker_id: str, metrics: str | None = None) -> bool:
    """Record that the worker is alive (and its metrics text, when given); False if it is not
    registered (it should register again)."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["heartbeat"], {"worker_id": worker_id, "metrics": metrics}, prepare=True)
        return cur.rowcount == 1


@wrap
async def metrics(conn: Connection, fresh_seconds: float) -> dict[str, str]:
    """Worker id -> metrics text of the workers that heartbeat within ``fresh_seconds``."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["metrics"], {"fresh": fresh_seconds})
        return {worker_id: text for worker_id, text in await cur.fetchall()}


@wrap
async def deregister(conn: Connection, worker_id: str) -> bool:
    """Remove the worker; False if it was not registered."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["deregister"], {"worker_id": worker_id})
        return cur.rowcount == 1


@wrap
async def list(conn: Connection) -> builtins.list[dict[str, Any]]:
    """Registered workers as JSON-ready dicts; ``heartbeat_age`` is seconds since the last heartbeat."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["list"])
        rows = await cur.fetchall()
    for row in rows:
        row["started_at"] = row["started_at"].isoformat()
        row["heartbeat"] = row["heartbeat"].isoformat()
    return rows
