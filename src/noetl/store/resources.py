"""Named global resources: ``noetl resource set pg_pool 5`` caps how many units of ``pg_pool`` the
commands running across all workers hold at once (a step asks with ``spec.resources: {pg_pool: 1}``).

The cap is enforced by the checked claim (``noetl.claim``, migration 0002) under one lock, so two
workers can never both take the last unit. A resource name not set here is a worker resource: it
must fit the claiming worker's ``--resources`` capacity instead.
"""

from __future__ import annotations

import builtins
from typing import Any

from psycopg.rows import dict_row

from noetl.store import queries
from noetl.store.db import Connection
from noetl.store.errors import wrap

Q = queries.load("resources")


@wrap
async def put(conn: Connection, name: str, capacity: int) -> None:
    """Create the resource or change its capacity (commands already running keep their units)."""
    await conn.execute(Q["put"], {"name": name, "capacity": capacity})


@wrap
async def list(conn: Connection) -> builtins.list[dict[str, Any]]:
    """Every global resource with ``capacity`` and ``in_use`` (units held by leased commands)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["list"])
        return [{**row, "in_use": int(row["in_use"])} for row in await cur.fetchall()]


@wrap
async def delete(conn: Connection, name: str) -> bool:
    cur = await conn.execute(Q["delete"], {"name": name})
    return cur.rowcount == 1
