"""The checked claim (``noetl.claim``) against a real PostgreSQL: priority, aging, pools, worker
resources, global caps, concurrency keys (limits and turns) and execution gates."""

from __future__ import annotations

import asyncio
from typing import Any

from noetl.store import backlog, commands, executions, resources
from noetl.store.db import Connection
from noetl.store.ports import NewCommand

LEASE = 30.0


def cmd(
    n: int,
    *,
    execution: int = 9001,
    pool: str = "default",
    priority: int = 0,
    key: str | None = None,
    needs: dict[str, Any] | None = None,
) -> NewCommand:
    if key is not None and needs is None:
        needs = {}
    return NewCommand(
        f"{execution}:{n}", execution, 1, f"s{n}", None, {}, pool=pool, priority=priority,
        concurrency_key=key, needs=needs,
    )  # fmt: skip


def ids(leases: list[Any]) -> list[str]:
    return [lease.command_id for lease in leases]


async def done(conn: Connection, *command_ids: str) -> None:
    await conn.execute(
        "UPDATE noetl.command SET status = 'done', lease_until = NULL WHERE command_id = ANY(%s)",
        [list(command_ids)],
    )


async def test_highest_priority_first_then_oldest(conn: Connection) -> None:
    await commands.insert(conn, [cmd(1), cmd(2, priority=3), cmd(3, priority=-1), cmd(4, priority=3), cmd(5)])
    leases = await commands.claim(conn, "w", ["default"], 10, LEASE)
    assert ids(leases) == ["9001:2", "9001:4", "9001:1", "9001:5", "9001:3"]


async def test_aging_lifts_a_waiting_command_above_fresh_high_priority_work(conn: Connection) -> None:
    await commands.insert(conn, [cmd(1, priority=0)])
    await conn.execute("UPDATE noetl.command SET updated_at = now() - interval '100 seconds'")
    for _ in range(3):  # three aging periods of 30 s have passed (each pass ages what waited 30 s)
        await backlog.age(conn, 30.0)
        await conn.execute("UPDATE noetl.command SET updated_at = updated_at - interval '30 seconds'")
    await commands.insert(conn, [cmd(2, priority=2)])
    leases = await commands.claim(conn, "w", ["default"], 1, LEASE)
    assert ids(leases) == ["9001:1"]
    assert leases[0].priority == 3


async def test_a_worker_claims_only_from_its_pools(conn: Connection) -> None:
    await commands.insert(conn, [cmd(1, pool="gpu"), cmd(2, pool="cpu"), cmd(3)])
    assert ids(await commands.claim(conn, "w", ["gpu"], 10, LEASE)) == ["9001:1"]
    assert ids(await commands.claim(conn, "w", ["cpu", "default"], 10, LEASE)) == ["9001:2", "9001:3"]


async def test_worker_resources_must_fit_the_free_capacity(conn: Connection) -> None:
    gpu = {"resources": {"gpu": 1, "memory_mb": 2048}}
    await commands.insert(conn, [cmd(n, needs=gpu) for n in range(1, 5)])
    capacity = {"gpu": 2, "memory_mb": 16000}
    assert await commands.claim(conn, "cpu-only", ["default"], 10, LEASE) == []
    first = await commands.claim(conn, "w", ["default"], 10, LEASE, capacity)
    assert ids(first) == ["9001:1", "9001:2"]
    assert await commands.claim(conn, "w", ["default"], 10, LEASE, capacity) == []
    other = await commands.claim(conn, "w2", ["default"], 10, LEASE, {"gpu": 1, "memory_mb": 1024})
    assert other == []  # memory does not fit
    await done(conn, "9001:1")
    assert ids(await commands.claim(conn, "w", ["default"], 10, LEASE, capacity)) == ["9001:3"]


async def test_a_global_resource_caps_units_across_workers(conn: Connection) -> None:
    await resources.put(conn, "pg_pool", 3)
    needs = {"resources": {"pg_pool": 1}}
    await commands.insert(conn, [cmd(n, needs=needs) for n in range(1, 9)] + [cmd(9)])
    taken = ids(await commands.claim(conn, "w1", ["default"], 2, LEASE))
    taken += ids(await commands.claim(conn, "w2", ["default"], 10, LEASE))
    assert taken == ["9001:1", "9001:2", "9001:3", "9001:9"]  # the plain command is not held back
    assert (await resources.list(conn))[0]["in_use"] == 3


async def test_concurrent_claimers_never_exceed_a_global_cap(store_url: str, conn: Connection) -> None:
    from noetl.store import db

    await resources.put(conn, "db", 5)
    await commands.insert(conn, [cmd(n, needs={"resources": {"db": 1}}) for n in range(100)])
    connections = [await db.connect(store_url) for _ in range(8)]
    try:
        claims = await asyncio.gather(
            *(commands.claim(c, f"w{i}", ["default"], 4, LEASE) for i, c in enumerate(connections))
        )
    finally:
        for c in connections:
            await c.close()
    assert sum(len(c) for c in claims) == 5


async def test_a_key_limit_holds_and_other_keys_still_run(conn: Connection) -> None:
    limited = {"key_limit": 2}
    await commands.insert(conn, [cmd(n, key="acme", needs=limited) for n in range(1, 6)])
    await commands.insert(conn, [cmd(6, key="globex", needs=limited)])
    leases = await commands.claim(conn, "w", ["default"], 10, LEASE)
    assert sorted(ids(leases)) == ["9001:1", "9001:2", "9001:6"]
    assert await commands.claim(conn, "w", ["default"], 10, LEASE) == []


async def test_keys_take_turns_so_a_deep_backlog_does_not_starve_a_small_tenant(conn: Connection) -> None:
    await commands.insert(conn, [cmd(n, key="big") for n in range(1, 301)])
    await commands.insert(conn, [cmd(1000, key="small")])
    first = await commands.claim(conn, "w", ["default"], 1, LEASE)
    second = await commands.claim(conn, "w", ["default"], 1, LEASE)
    # "big" already has one in flight, so "small" has the turn (its only command is 300 deep)
    assert ids(first) == ["9001:1"]
    assert ids(second) == ["9001:1000"]


async def test_max_concurrent_executions_admits_executions_up_to_the_gate(conn: Connection) -> None:
    gate = {"gate": "pb/limited", "gate_limit": 2}
    for execution in (1, 2, 3):
        await executions.create(conn, execution, 1, "pb/limited", {}, None)
        await commands.insert(conn, [cmd(1, execution=execution, needs=gate)])
    first = await commands.claim(conn, "w", ["default"], 10, LEASE)
    assert ids(first) == ["1:1", "2:1"]
    await commands.insert(conn, [cmd(2, execution=1, needs=gate)])  # an admitted execution continues
    assert ids(await commands.claim(conn, "w", ["default"], 10, LEASE)) == ["1:2"]
    await conn.execute("UPDATE noetl.execution SET status = 'COMPLETED' WHERE execution_id = 2")
    assert ids(await commands.claim(conn, "w", ["default"], 10, LEASE)) == ["3:1"]
    await backlog.prune_admissions(conn)
    cur = await conn.execute("SELECT execution_id FROM noetl.admission ORDER BY 1")
    assert [r[0] for r in await cur.fetchall()] == [1, 3]


async def test_queue_stats_group_by_pool_priority_and_key(conn: Connection) -> None:
    await commands.insert(conn, [cmd(1, key="a"), cmd(2, key="a"), cmd(3, pool="gpu", priority=2)])
    await commands.claim(conn, "w", ["default"], 1, LEASE)
    stats = {(g["pool"], g["priority"], g["concurrency_key"]): g for g in await backlog.stats(conn)}
    assert stats[("default", 0, "a")]["ready"] == 1
    assert stats[("default", 0, "a")]["in_flight"] == 1
    assert stats[("gpu", 2, None)]["ready"] == 1
    assert await backlog.depth_at_least(conn, "default", 10) == 1
    assert await backlog.depth_at_least(conn, "gpu", 10) == 1


async def test_commands_without_a_key_are_not_starved_by_a_keyed_backlog(conn: Connection) -> None:
    await commands.insert(conn, [cmd(n, key="big") for n in range(1, 101)])
    await commands.insert(conn, [cmd(500)])
    assert ids(await commands.claim(conn, "w", ["default"], 1, LEASE)) == ["9001:1"]
    assert ids(await commands.claim(conn, "w", ["default"], 1, LEASE)) == ["9001:500"]
