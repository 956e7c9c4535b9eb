"""Export cursors: each sink reads the event log after a durable cursor of its own.

The log is read in commit order (``event.tx``, then execution and event id), and only rows of
transactions that have ended, so a cursor never has a row appear behind it. A sink delivers a
batch, then advances its cursor: delivery is at least once, and a sink makes a re-delivered event
count once (ClickHouse: a ReplacingMergeTree keyed by execution and event id).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row

from noetl.store import queries
from noetl.store.db import Connection
from noetl.store.errors import wrap

Q = queries.load("exports")

LAG_CAP = 1_000_000
"""``lag`` counts at most this many events behind a cursor (the count stays cheap on a big log)."""


@dataclass(frozen=True, slots=True)
class Position:
    """A place in the log's commit order: the last event a sink has."""

    tx: str = "0"
    execution_id: int = 0
    event_id: int = 0

    def params(self) -> dict[str, Any]:
        return {"tx": self.tx, "execution_id": self.execution_id, "event_id": self.event_id}


@dataclass(frozen=True, slots=True)
class Cursor:
    sink: str
    position: Position
    exported: int
    last_error: str | None
    updated_at: datetime


def _cursor(row: dict[str, Any]) -> Cursor:
    position = Position(row["tx"], row["execution_id"], row["event_id"])
    return Cursor(row["sink"], position, row["exported"], row["last_error"], row["updated_at"])


def position_of(row: dict[str, Any]) -> Position:
    """The position of an exported row (one of ``batch``'s)."""
    return Position(row["tx"], row["execution_id"], row["event_id"])


@wrap
async def cursor(conn: Connection, sink: str) -> Cursor:
    """The sink's cursor; a sink seen for the first time starts at the beginning of the log."""
    await conn.execute(Q["ensure"], {"sink": sink})
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["cursor"], {"sink": sink})
        row = await cur.fetchone()
    assert row is not None, "ensure created the row"
    return _cursor(row)


@wrap
async def cursors(conn: Connection) -> list[Cursor]:
    """Every sink's cursor."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["cursors"])
        return [_cursor(row) for row in await cur.fetchall()]


@wrap
async def batch(conn: Connection, after: Position, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` events after ``after`` in commit order, with their execution's path and their
    command's pool, worker and attempt."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["batch"], {**after.params(), "limit": limit, "since": None}, prepare=True)
        return await cur.fetchall()


@wrap
async def since(conn: Connection, moment: datetime, after: Position, limit: int) -> list[dict[str, Any]]:
    """Like ``batch``, for events written at or after ``moment`` (a backfill's pages)."""
    params = {**after.params(), "since": moment, "limit": limit}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["batch"], params)
        return await cur.fetchall()


@wrap
async def advance(conn: Connection, sink: str, to: Position, count: int) -> None:
    """Move the sink's cursor to ``to`` after it took ``count`` more events; clears its error."""
    await conn.execute(Q["advance"], {**to.params(), "sink": sink, "count": count})


@wrap
async def failed(conn: Connection, sink: str, error: str) -> None:
    """Remember the sink's last failure (shown by ``noetl export status``)."""
    await conn.execute(Q["failed"], {"sink": sink, "error": error[:2000]})


@wrap
async def lag(conn: Connection, after: Position, cap: int = LAG_CAP) -> tuple[int, float]:
    """Events after ``after`` (at most ``cap``) and the age in seconds of the oldest one."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["lag"], {**after.params(), "cap": cap})
        row = await cur.fetchone()
    assert row is not None
    return int(row["events"]), float(row["seconds"] or 0.0)


@wrap
async def step_stats(conn: Connection, path: str, moment: datetime) -> list[dict[str, Any]]:
    """Per step of ``path``'s executions since ``moment``: calls, failures, retries, p50/p95/max ms."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["step_stats"], {"path": path, "since": moment})
        return await cur.fetchall()


@wrap
async def execution_stats(conn: Connection, path: str, moment: datetime) -> dict[str, int]:
    """How many of ``path``'s executions since ``moment`` ended each way."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["execution_stats"], {"path": path, "since": moment})
        row = await cur.fetchone()
    return {key: int(value) for key, value in (row or {}).items()}


@wrap
async def execution_info(conn: Connection, execution_id: int) -> dict[str, Any] | None:
    """An execution's path, catalog entry and parent (with the parent's ``parent_key``), for traces."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["execution_info"], {"execution_id": execution_id})
        return await cur.fetchone()


@wrap
async def command_rows(conn: Connection, command_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Command id -> its pool, worker and attempt (by primary key)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["command_rows"], {"command_ids": command_ids})
        return {row["command_id"]: row for row in await cur.fetchall()}


@wrap
async def trace_root(conn: Connection, execution_id: int) -> tuple[int, str | None] | None:
    """The root execution of ``execution_id``'s sub-playbook chain and the trace id its execute
    request carried (None when it carried none); None when the execution is unknown."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["trace_root"], {"execution_id": execution_id})
        row = await cur.fetchone()
    return (int(row["execution_id"]), row["trace_id"]) if row else None
