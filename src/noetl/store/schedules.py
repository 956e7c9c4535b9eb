"""Schedules: start an execution of a playbook on a cron expression or at a fixed interval.

One row per schedule name (``noetl.schedule``). The scheduler leader (``noetl.server.scheduler``)
reads the due rows with :func:`due` (locked, skipped when another transaction holds them), starts
their executions and moves ``next_run_at`` on with :func:`advance`.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import class_row

from noetl.store import jsonb, queries
from noetl.store.db import Connection
from noetl.store.errors import wrap

Q = queries.load("schedules")

MISFIRE_POLICIES = ("skip", "run_once", "catch_up")


@dataclass(frozen=True, slots=True)
class Schedule:
    name: str
    path: str
    cron: str | None
    interval_seconds: float | None
    timezone: str
    payload: dict[str, Any]
    misfire: str
    catch_up_limit: int
    paused: bool
    next_run_at: datetime
    last_run_at: datetime | None = None
    last_execution_id: int | None = None
    runs: int = 0
    created_at: datetime | None = None


@wrap
async def put(
    conn: Connection,
    name: str,
    path: str,
    *,
    cron: str | None,
    interval_seconds: float | None,
    timezone: str,
    payload: dict[str, Any],
    misfire: str,
    catch_up_limit: int,
    next_run_at: datetime,
) -> Schedule:
    """Create the schedule ``name``, or replace its definition (it stays paused or not)."""
    params = {
        "name": name,
        "path": path,
        "cron": cron,
        "interval_seconds": interval_seconds,
        "timezone": timezone,
        "payload": jsonb.param(payload),
        "misfire": misfire,
        "catch_up_limit": catch_up_limit,
        "next_run_at": next_run_at,
    }
    return await _one(conn, Q["put"], params)  # type: ignore[return-value]


@wrap
async def list(conn: Connection) -> builtins.list[Schedule]:
    async with conn.cursor(row_factory=class_row(Schedule)) as cur:
        await cur.execute(Q["list"])
        return await cur.fetchall()


@wrap
async def get(conn: Connection, name: str) -> Schedule | None:
    return await _one(conn, Q["get"], {"name": name})


@wrap
async def pause(conn: Connection, name: str) -> Schedule | None:
    return await _one(conn, Q["pause"], {"name": name, "paused": True})


@wrap
async def resume(conn: Connection, name: str, next_run_at: datetime) -> Schedule | None:
    return await _one(conn, Q["resume"], {"name": name, "next_run_at": next_run_at})


@wrap
async def delete(conn: Connection, name: str) -> bool:
    cur = await conn.execute(Q["delete"], {"name": name})
    return cur.rowcount == 1


@wrap
async def due(conn: Connection, now: datetime, limit: int = 100) -> builtins.list[Schedule]:
    """Schedules to run at ``now``, locked until the transaction ends (others' locked rows skipped)."""
    async with conn.cursor(row_factory=class_row(Schedule)) as cur:
        await cur.execute(Q["due"], {"now": now, "limit": limit})
        return await cur.fetchall()


@wrap
async def advance(
    conn: Connection,
    name: str,
    next_run_at: datetime,
    *,
    last_run_at: datetime | None = None,
    last_execution_id: int | None = None,
    runs: int = 0,
) -> None:
    params = {
        "name": name,
        "next_run_at": next_run_at,
        "last_run_at": last_run_at,
        "last_execution_id": last_execution_id,
        "runs": runs,
    }
    await conn.execute(Q["advance"], params)


async def _one(conn: Connection, query: Any, params: dict[str, Any]) -> Schedule | None:
    async with conn.cursor(row_factory=class_row(Schedule)) as cur:
        await cur.execute(query, params)
        return await cur.fetchone()
