"""Executions: one row per run of a playbook, a projection of its event log.

The orchestrator creates the row with the run's first events, locks it (``lock``) for each pass,
and moves ``status`` and ``last_event_id`` forward in the same transaction as the events it
appends. ``request_cancel`` only flags the row and wakes the orchestrator, which does the
cancelling in its next pass.
"""

from __future__ import annotations

import builtins
import enum
from collections.abc import Sequence
from typing import Any, Final

from psycopg.rows import class_row, tuple_row

from noetl.dsl.model import JSON
from noetl.store import jsonb, queries
from noetl.store.db import Connection
from noetl.store.errors import wrap
from noetl.store.ports import ExecutionRow

Q = queries.load("executions")


class Unset(enum.Enum):
    """Marks an ``update`` argument left out: the column keeps its value."""

    UNSET = "unset"


UNSET: Final = Unset.UNSET


@wrap
async def create(
    conn: Connection,
    execution_id: int,
    catalog_id: int | None,
    path: str,
    payload: dict[str, Any] | None,
    parent_execution_id: int | None = None,
    principal: dict[str, Any] | None = None,
) -> None:
    """Insert a RUNNING execution with no events yet (``last_event_id`` 0), started for
    ``principal`` (``{name, role, paths}``; None: no one in particular, e.g. a schedule)."""
    params = {
        "execution_id": execution_id,
        "catalog_id": catalog_id,
        "path": path,
        "parent_execution_id": parent_execution_id,
        "payload": jsonb.param(payload) if payload is not None else None,
        "principal": jsonb.param(principal) if principal is not None else None,
    }
    await conn.execute(Q["create"], params)


@wrap
async def create_child(
    conn: Connection,
    execution_id: int,
    catalog_id: int | None,
    path: str,
    payload: dict[str, Any] | None,
    parent_execution_id: int,
    parent_key: str,
) -> int | None:
    """Insert a RUNNING child execution started by the parent's call ``parent_key``; None (and no
    change) when that call already started one: then :func:`child_by_key` finds it."""
    params = {
        "execution_id": execution_id,
        "catalog_id": catalog_id,
        "path": path,
        "parent_execution_id": parent_execution_id,
        "payload": jsonb.param(payload) if payload is not None else None,
        "parent_key": parent_key,
    }
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["create_child"], params)
        row = await cur.fetchone()
    return None if row is None else int(row[0])


@wrap
async def principal(conn: Connection, execution_id: int) -> dict[str, Any] | None:
    """The principal recorded for the execution (its root's), or None."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["principal"], {"execution_id": execution_id})
        row = await cur.fetchone()
    return None if row is None or row[0] is None else dict(row[0])


@wrap
async def child_by_key(conn: Connection, parent_execution_id: int, parent_key: str) -> int | None:
    """The child execution the parent's call ``parent_key`` started, if any."""
    params = {"parent_execution_id": parent_execution_id, "parent_key": parent_key}
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["child_by_key"], params)
        row = await cur.fetchone()
    return None if row is None else int(row[0])


@wrap
async def get(conn: Connection, execution_id: int) -> ExecutionRow | None:
    async with conn.cursor(row_factory=class_row(ExecutionRow)) as cur:
        await cur.execute(Q["get"], {"execution_id": execution_id}, prepare=True)
        return await cur.fetchone()


@wrap
async def list(
    conn: Connection,
    status: str | None = None,
    path: str | None = None,
    parent: int | None = None,
    limit: int = 100,
    offset: int = 0,
    *,
    catalog_id: int | None = None,
) -> builtins.list[ExecutionRow]:
    """Executions newest first, optionally filtered by status, path, parent or catalog entry."""
    params = {
        "status": status,
        "path": path,
        "parent": parent,
        "catalog_id": catalog_id,
        "limit": limit,
        "offset": offset,
    }
    async with conn.cursor(row_factory=class_row(ExecutionRow)) as cur:
        await cur.execute(Q["list"], params)
        return await cur.fetchall()


@wrap
async def lock(conn: Connection, execution_ids: Sequence[int]) -> builtins.list[ExecutionRow]:
    """Lock the RUNNING executions among ``execution_ids`` that no other transaction holds, until the
    caller's transaction ends (inside ``conn.transaction()``: in autocommit the lock ends at once)."""
    if not execution_ids:
        return []
    async with conn.cursor(row_factory=class_row(ExecutionRow)) as cur:
        await cur.execute(Q["lock"], {"execution_ids": builtins.list(execution_ids)}, prepare=True)
        return await cur.fetchall()


@wrap
async def lock_waiting(conn: Connection, execution_ids: Sequence[int]) -> builtins.list[ExecutionRow]:
    """Lock ``execution_ids`` (any status) in id order, waiting for transactions that hold them: a
    command's execution and the child it waits for, while the command is suspended."""
    async with conn.cursor(row_factory=class_row(ExecutionRow)) as cur:
        await cur.execute(Q["lock_waiting"], {"execution_ids": sorted(set(execution_ids))}, prepare=True)
        return await cur.fetchall()


@wrap
async def hold_parent(conn: Connection, execution_id: int) -> tuple[str, bool, str | None] | None:
    """Share-lock a parent execution until the transaction ends; its (status, cancel_requested,
    cancel_reason), or None when it does not exist."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["hold_parent"], {"execution_id": execution_id}, prepare=True)
        row = await cur.fetchone()
    return None if row is None else (str(row[0]), bool(row[1]), row[2])


@wrap
async def age(conn: Connection, execution_id: int) -> tuple[str, float] | None:
    """An execution's status and seconds since it was created (the database's clock), or None."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["age"], {"execution_id": execution_id}, prepare=True)
        row = await cur.fetchone()
    return None if row is None else (str(row[0]), float(row[1]))


@wrap
async def update(
    conn: Connection,
    execution_id: int,
    *,
    status: str,
    last_event_id: int,
    result: JSON | Unset = UNSET,
    error: dict[str, JSON] | Unset | None = UNSET,
) -> bool:
    """Move the projection forward; ``completed_at`` is set when ``status`` leaves RUNNING.
    ``result`` and ``error`` change only when given. False if there is no such execution."""
    params = {
        "execution_id": execution_id,
        "status": status,
        "last_event_id": last_event_id,
        "set_result": result is not UNSET,
        "result": None if isinstance(result, Unset) else jsonb.param(result),
        "set_error": error is not UNSET,
        "error": None if isinstance(error, Unset) or error is None else jsonb.param(error),
    }
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["update"], params, prepare=True)
        return cur.rowcount == 1


@wrap
async def request_cancel(conn: Connection, execution_id: int, reason: str) -> bool:
    """Flag a RUNNING execution for cancellation and notify ``noetl_results``; False if it is not
    running. The first reason given is kept."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["request_cancel"], {"execution_id": execution_id, "reason": reason})
        return cur.rowcount == 1


@wrap
async def children(conn: Connection, execution_id: int, *, recursive: bool = False) -> builtins.list[int]:
    """Ids of the sub-playbook executions started by this one (all generations when ``recursive``)."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["descendants" if recursive else "children"], {"execution_id": execution_id})
        return [row[0] for row in await cur.fetchall()]


@wrap
async def with_pending_work(conn: Connection, limit: int = 100) -> builtins.list[int]:
    """RUNNING executions with reported outcomes not yet recorded or a cancellation requested."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["with_pending_work"], {"limit": limit})
        return [row[0] for row in await cur.fetchall()]


@wrap
async def count_running(conn: Connection) -> int:
    """How many executions are RUNNING (through the status index)."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["count_running"])
        row = await cur.fetchone()
    return int(row[0]) if row else 0
