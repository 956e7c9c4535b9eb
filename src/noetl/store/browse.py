"""Read queries for browsing executions (the web UI): filtered keyset pages, change polls, per-step
counts, a timeline of commands, pages of the log.

Every query here is bounded by an index or by one execution's log: a page of the list walks the
primary key backwards (never ``OFFSET``), a change poll reads the running executions and the ids
it was told to watch, and per-execution queries read that execution's events once per page load
(live updates then follow the log from a cursor, :mod:`noetl.server.live`).
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import class_row, dict_row, tuple_row

from noetl.engine.events import Event
from noetl.store import queries
from noetl.store.db import Connection
from noetl.store.errors import wrap
from noetl.store.ports import ExecutionRow

Q = queries.load("browse")


@dataclass(frozen=True, slots=True)
class Filters:
    """What a page of executions is restricted to (every field off when None/empty).

    ``globs`` are the ``fnmatch`` path patterns a principal may see (``*`` and ``?``), ``prefix`` a
    path prefix, ``text`` a free text matched against path, id and error.
    """

    statuses: tuple[str, ...] = ()
    prefix: str | None = None
    globs: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    parent: int | None = None
    text: str | None = None


def like_literal(text: str) -> str:
    """``text`` with LIKE's wildcards and escape character escaped."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def glob_to_like(pattern: str) -> str:
    """An ``fnmatch`` pattern as a LIKE pattern (``*`` -> ``%``, ``?`` -> ``_``). A bracket class
    is matched literally: narrower than fnmatch, never wider."""
    return "".join("%" if ch == "*" else "_" if ch == "?" else like_literal(ch) for ch in pattern)


@wrap
async def search(
    conn: Connection, filters: Filters, *, cursor: int | None, limit: int
) -> builtins.list[ExecutionRow]:
    """Up to ``limit`` executions older than ``cursor`` (an execution id), newest first."""
    text = filters.text.strip() if filters.text else None
    params = {
        "cursor": cursor,
        "statuses": builtins.list(filters.statuses) or None,
        "prefix": like_literal(filters.prefix) + "%" if filters.prefix else None,
        "globs": [glob_to_like(g) for g in filters.globs] or None,
        "since": filters.since,
        "until": filters.until,
        "parent": filters.parent,
        "text": f"%{like_literal(text)}%" if text else None,
        "exact": text,
        "limit": limit,
    }
    async with conn.cursor(row_factory=class_row(ExecutionRow)) as cur:
        await cur.execute(Q["search"], params)
        return await cur.fetchall()


@wrap
async def changed(conn: Connection, newest: int, watched: Sequence[int]) -> builtins.list[ExecutionRow]:
    """Running executions, those with ids above ``newest``, and those in ``watched`` (no payload
    or result: a change poll needs the summary only)."""
    params = {"newest": newest, "watched": builtins.list(watched)}
    async with conn.cursor(row_factory=class_row(ExecutionRow)) as cur:
        await cur.execute(Q["changed"], params)
        return await cur.fetchall()


@wrap
async def newest(conn: Connection) -> int:
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["newest"])
        row = await cur.fetchone()
    return int(row[0]) if row else 0


@wrap
async def markers(conn: Connection, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Per execution among ``ids``: ``errors`` (failed calls), ``warnings`` (template warnings),
    ``waiting`` (seconds the oldest due command has waited for a worker) and ``ready`` (how many)."""
    out: dict[int, dict[str, Any]] = {}
    if not ids:
        return out
    params = {"ids": builtins.list(ids)}
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["markers"], params)
        for execution_id, errors, warnings in await cur.fetchall():
            out.setdefault(execution_id, {}).update(errors=int(errors), warnings=int(warnings))
        await cur.execute(Q["waiting"], params)
        for execution_id, waited, ready in await cur.fetchall():
            out.setdefault(execution_id, {}).update(waiting=float(waited or 0), ready=int(ready))
    return out


@wrap
async def step_counts(conn: Connection, execution_id: int) -> builtins.list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["step_counts"], {"execution_id": execution_id})
        rows = await cur.fetchall()
        await cur.execute(Q["loop_sizes"], {"execution_id": execution_id})
        sizes = {r["step"]: r["json_array_length"] for r in await cur.fetchall()}
    for row in rows:
        row["loop_size"] = sizes.get(row["step"])
    return rows


@wrap
async def first_event(conn: Connection, execution_id: int) -> dict[str, Any]:
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["first_event"], {"execution_id": execution_id})
        row = await cur.fetchone()
    return dict(row[0]) if row and isinstance(row[0], dict) else {}


@wrap
async def timeline(conn: Connection, execution_id: int, per_step: int) -> builtins.list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["timeline"], {"execution_id": execution_id, "per_step": per_step})
        return await cur.fetchall()


@wrap
async def log(
    conn: Connection,
    execution_id: int,
    *,
    before: int | None = None,
    after: int | None = None,
    event_type: str | None = None,
    step: str | None = None,
    text: str | None = None,
    limit: int = 200,
) -> builtins.list[Event]:
    """A page of the log, newest first."""
    params = {
        "execution_id": execution_id,
        "before": before,
        "after": after,
        "event_type": event_type,
        "step": step,
        "text": f"%{like_literal(text)}%" if text else None,
        "limit": limit,
    }
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["log"], params)
        rows = await cur.fetchall()
    return [_event(r) for r in rows]


@wrap
async def step_outcomes(conn: Connection, execution_id: int, step: str, limit: int) -> builtins.list[Event]:
    params = {"execution_id": execution_id, "step": step, "limit": limit}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["step_outcomes"], params)
        rows = await cur.fetchall()
    return [_event(r) for r in rows]


def _event(r: dict[str, Any]) -> Event:
    return Event(r["event_type"], r["step"], r["command_id"], r["data"], r["at"], r["event_id"])
