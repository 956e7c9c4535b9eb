"""The result store: large step results kept out of the event log, addressed by a ref.

An event then carries the ref and a small extract. Writing the same ref again replaces it, so a
command that runs twice (at-least-once execution) leaves one result.
"""

from __future__ import annotations

from typing import Any

from psycopg.rows import tuple_row

from noetl.store import jsonb, queries
from noetl.store.db import Connection
from noetl.store.errors import wrap

Q = queries.load("results")


@wrap
async def put(conn: Connection, ref: str, execution_id: int, step: str | None, data: object) -> str:
    """Store ``data`` (JSON) under ``ref``; returns ``ref``."""
    text = jsonb.dumps(data)
    params = {
        "ref": ref,
        "execution_id": execution_id,
        "step": step,
        "data": text,
        "size_bytes": len(text.encode("utf-8")),
    }
    await conn.execute(Q["put"], params)
    return ref


@wrap
async def get(conn: Connection, ref: str) -> tuple[bool, Any]:
    """``(found, data)``: the stored value, which may itself be JSON null."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["get"], {"ref": ref})
        row = await cur.fetchone()
    return (False, None) if row is None else (True, row[0])
