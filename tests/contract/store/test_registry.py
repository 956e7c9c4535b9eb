"""The worker registry and the result store."""

from __future__ import annotations

from noetl.store import results, workers
from noetl.store.db import Connection


async def test_register_heartbeat_list_deregister(conn: Connection) -> None:
    await workers.register(conn, "w1", "alpha", ["default", "gpu"], 16, "host-a", 4242, {"version": "1"})
    await workers.register(conn, "w2", "beta", ["default"], None, None, None)
    listed = await workers.list(conn)
    assert [w["worker_id"] for w in listed] == ["w1", "w2"]
    first = listed[0]
    assert (first["name"], first["kind"], first["pools"], first["status"]) == (
        "alpha",
        "worker_pool",
        ["default", "gpu"],
        "ready",
    )
    assert (first["capacity"], first["hostname"], first["pid"], first["meta"]) == (
        16,
        "host-a",
        4242,
        {"version": "1"},
    )
    assert isinstance(first["heartbeat"], str) and 0 <= first["heartbeat_age"] < 60

    await conn.execute(
        "UPDATE noetl.runtime SET heartbeat = now() - interval '1 hour' WHERE worker_id = 'w1'"
    )
    assert (await workers.list(conn))[0]["heartbeat_age"] >= 3600
    assert await workers.heartbeat(conn, "w1")
    assert (await workers.list(conn))[0]["heartbeat_age"] < 60
    assert not await workers.heartbeat(conn, "unknown")

    await workers.register(conn, "w1", "alpha", ["other"], 4, "host-b", 1, None)  # a restart re-registers
    restarted = (await workers.list(conn))[0]
    assert (restarted["pools"], restarted["capacity"]) == (["other"], 4)
    assert await workers.deregister(conn, "w1")
    assert not await workers.deregister(conn, "w1")
    assert [w["worker_id"] for w in await workers.list(conn)] == ["w2"]


async def test_results_put_get_and_replace(conn: Connection) -> None:
    big = {"rows": [{"id": n, "name": f"row {n}"} for n in range(1000)]}
    assert await results.put(conn, "r1", 5, "fetch", big) == "r1"
    assert await results.get(conn, "r1") == (True, big)
    cur = await conn.execute("SELECT size_bytes, execution_id, step FROM noetl.result WHERE ref = 'r1'")
    size, execution_id, step = await cur.fetchone() or (0, 0, "")
    assert size > 10_000 and (execution_id, step) == (5, "fetch")

    await results.put(conn, "r1", 5, "fetch", None)
    assert await results.get(conn, "r1") == (True, None)
    assert await results.get(conn, "missing") == (False, None)
