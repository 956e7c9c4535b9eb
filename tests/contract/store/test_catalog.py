"""The catalog: versions per path, lookups by id, path and version, listing."""

from __future__ import annotations

import asyncio

from noetl.store import catalog, db
from noetl.store.db import Connection

YAML = "apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: a, path: demo/a}\nworkflow: []\n"


async def test_each_registration_of_a_path_is_the_next_version(conn: Connection) -> None:
    first = await catalog.register(conn, "demo/a", YAML, meta={"owner": "ann"})
    second = await catalog.register(conn, "demo/a", YAML + "# v2\n")
    other = await catalog.register(conn, "demo/b", YAML, kind="Workbook")
    assert (first.path, first.version, first.kind, first.meta) == ("demo/a", 1, "Playbook", {"owner": "ann"})
    assert (second.version, second.meta, other.version, other.kind) == (2, {}, 1, "Workbook")
    assert first.content == YAML and second.content.endswith("# v2\n")
    assert len({first.catalog_id, second.catalog_id, other.catalog_id}) == 3
    assert first.created_at is not None


async def test_get_by_id_latest_and_exact_version(conn: Connection) -> None:
    first = await catalog.register(conn, "demo/a", YAML)
    second = await catalog.register(conn, "demo/a", YAML + "# v2\n")
    assert await catalog.get(conn, catalog_id=first.catalog_id) == first
    assert await catalog.get(conn, path="demo/a") == second
    assert await catalog.get(conn, path="demo/a", version=1) == first
    assert await catalog.get(conn, path="demo/a", version=3) is None
    assert await catalog.get(conn, path="demo/missing") is None
    assert await catalog.get(conn, catalog_id=12345) is None


async def test_list_filters_by_kind_and_path(conn: Connection) -> None:
    a1 = await catalog.register(conn, "demo/a", YAML)
    b1 = await catalog.register(conn, "demo/b", YAML, kind="Workbook")
    a2 = await catalog.register(conn, "demo/a", YAML)
    assert await catalog.list(conn) == [a1, a2, b1]
    assert await catalog.list(conn, kind="Workbook") == [b1]
    assert await catalog.list(conn, path="demo/a") == [a1, a2]
    assert await catalog.list(conn, kind="Workbook", path="demo/a") == []


async def test_concurrent_registrations_of_one_path_get_distinct_versions(
    store_url: str, conn: Connection
) -> None:
    connections = [await db.connect(store_url) for _ in range(4)]
    try:
        entries = await asyncio.gather(*(catalog.register(c, "demo/race", YAML) for c in connections))
    finally:
        for c in connections:
            await c.close()
    assert sorted(e.version for e in entries) == [1, 2, 3, 4]


async def test_registration_inside_a_transaction_keeps_to_it(conn: Connection) -> None:
    class Abort(Exception):
        pass

    try:
        async with conn.transaction():
            await catalog.register(conn, "demo/tx", YAML)
            raise Abort
    except Abort:
        pass
    assert await catalog.get(conn, path="demo/tx") is None
