"""The event log: append-only, ordered per execution by event id, the truth of every execution.

The orchestrator appends a decision's events with the ids it reserved (``execution.last_event_id``
+ 1 ...) in the same transaction that updates the execution; the primary key (execution_id,
event_id) makes a second writer with the same ids fail instead of interleaving.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg.rows import dict_row, tuple_row

from noetl.engine.events import Event
from noetl.store import jsonb, queries
from noetl.store.db import Connection
from noetl.store.errors import wrap

Q = queries.load("events")


@wrap
async def append(conn: Connection, execution_id: int, first_id: int, events: Sequence[Event]) -> None:
    """Insert ``events`` with ids ``first_id``, ``first_id + 1``, ... in one statement."""
    if not events:
        return
    params = {
        "execution_id": execution_id,
        "first_id": first_id,
        "event_types": [e.name for e in events],
        "steps": [e.step for e in events],
        "command_ids": [e.command_id for e in events],
        "data": [jsonb.param(e.data) for e in events],
        "at": [float(e.at) for e in events],
    }
    await conn.execute(Q["append"], params, prepare=True)


@wrap
async def read(
    conn: Connection,
    execution_id: int,
    after: int = 0,
    limit: int | None = None,
    event_type: str | None = None,
) -> list[Event]:
    """The events after id ``after`` (optionally one type, at most ``limit``), in log order."""
    params = {"execution_id": execution_id, "after": after, "limit": limit, "event_type": event_type}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["read"], params, prepare=True)
        rows = await cur.fetchall()
    return [
        Event(r["event_type"], r["step"], r["command_id"], r["data"], r["at"], r["event_id"]) for r in rows
    ]


@wrap
async def count(conn: Connection, execution_id: int) -> int:
    """How many events the execution has."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["count"], {"execution_id": execution_id})
        row = await cur.fetchone()
    return int(row[0]) if row else 0


@wrap
async def loop_results(conn: Connection, ref: dict[str, Any]) -> list[Any]:
    """The results a loop's ``{"$results": ref}`` stands for: each iteration's ``call.done`` result
    in item order, None for a failed one (``noetl.runtime.results``)."""
    params = {
        "execution_id": int(ref["execution_id"]),
        "step": str(ref["step"]),
        "after": int(ref["after"]),
        "until": int(ref.get("until") or 0),
    }
    found: dict[int, Any] = {}
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["loop_results"], params, prepare=True)
        for index, ok, result in await cur.fetchall():
            if index is not None:
                found[index] = result if ok else None
    return [found.get(i) for i in range(int(ref["count"]))]
