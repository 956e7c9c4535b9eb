"""The command queue: claim order and filters, SKIP LOCKED, exactly-once reports, leases, reaping."""

from __future__ import annotations

import asyncio
from typing import Any

from noetl.store import commands, executions
from noetl.store.db import Connection
from noetl.store.ports import NewCommand, Report

EXECUTION = 7001
LEASE = 30.0


def command(
    n: int, *, pool: str = "default", priority: int = 0, max_attempts: int = 3, execution: int = EXECUTION
) -> NewCommand:
    return NewCommand(
        command_id=f"{execution}:{n}",
        execution_id=execution,
        catalog_id=11,
        step=f"step{n}",
        index=n if n % 2 else None,
        context={"n": n, "nested": {"list": [1, "two", None]}},
        pool=pool,
        priority=priority,
        max_attempts=max_attempts,
    )


def outcome(cid: str, ok: bool = True) -> list[dict[str, Any]]:
    kind = "command.completed" if ok else "command.failed"
    return [{"event_type": kind, "step": "s", "command_id": cid, "data": {"index": None}, "timestamp": 1.5}]


async def row(conn: Connection, command_id: str) -> dict[str, Any]:
    cur = await conn.execute(
        "SELECT status, attempt, worker_id, outcome, recorded, lease_until FROM noetl.command WHERE command_id = %s",
        [command_id],
    )
    found = await cur.fetchone()
    assert found is not None
    return dict(
        zip(["status", "attempt", "worker_id", "outcome", "recorded", "lease_until"], found, strict=True)
    )


async def expire(conn: Connection, *command_ids: str) -> None:
    await conn.execute(
        "UPDATE noetl.command SET lease_until = now() - interval '1 second' WHERE command_id = ANY(%s)",
        [list(command_ids)],
    )


async def test_claim_takes_highest_priority_then_oldest_and_fills_the_lease(conn: Connection) -> None:
    await commands.insert(conn, [command(1), command(2, priority=5), command(3), command(4, priority=5)])
    first = await commands.claim(conn, "w1", ["default"], 1, LEASE)
    rest = await commands.claim(conn, "w1", ["default"], 10, LEASE)
    assert [lease.command_id for lease in first + rest] == ["7001:2", "7001:4", "7001:1", "7001:3"]
    lease = first[0]
    assert (lease.execution_id, lease.catalog_id, lease.step, lease.index) == (EXECUTION, 11, "step2", None)
    assert lease.context == {"n": 2, "nested": {"list": [1, "two", None]}}
    assert (lease.attempt, lease.pool, lease.priority, lease.max_attempts) == (1, "default", 5, 3)
    assert rest[1].index == 1
    state = await row(conn, "7001:2")
    assert (state["status"], state["worker_id"], state["attempt"]) == ("leased", "w1", 1)
    assert await commands.claim(conn, "w1", ["default"], 10, LEASE) == []


async def test_claim_only_from_the_workers_pools_and_only_when_available(conn: Connection) -> None:
    await commands.insert(conn, [command(1, pool="a"), command(2, pool="b"), command(3, pool="c")])
    await conn.execute(
        "UPDATE noetl.command SET available_at = now() + interval '1 hour' WHERE command_id = '7001:2'"
    )
    assert await commands.depth(conn) == {"a": 1, "b": 1, "c": 1}
    claimed = await commands.claim(conn, "w1", ["a", "b"], 10, LEASE)
    assert [lease.command_id for lease in claimed] == ["7001:1"]
    await conn.execute(
        "UPDATE noetl.command SET available_at = now() - interval '1 second' WHERE command_id = '7001:2'"
    )
    assert [lease.command_id for lease in await commands.claim(conn, "w1", ["a", "b"], 10, LEASE)] == [
        "7001:2"
    ]
    assert await commands.claim(conn, "w1", [], 10, LEASE) == []
    assert await commands.depth(conn) == {"c": 1}


async def test_rows_locked_by_an_open_claim_are_skipped_not_waited_for(
    conn: Connection, other: Connection
) -> None:
    await commands.insert(conn, [command(n) for n in range(10)])
    async with conn.transaction():
        mine = await commands.claim(conn, "w1", ["default"], 3, LEASE)
        theirs = await asyncio.wait_for(commands.claim(other, "w2", ["default"], 10, LEASE), 5)
    assert [lease.command_id for lease in mine] == ["7001:0", "7001:1", "7001:2"]
    assert [lease.command_id for lease in theirs] == [f"7001:{n}" for n in range(3, 10)]


async def test_concurrent_claimers_never_get_the_same_command(conn: Connection, other: Connection) -> None:
    await commands.insert(conn, [command(n) for n in range(300)])

    async def drain(c: Connection, worker: str) -> list[str]:
        got: list[str] = []
        while batch := await commands.claim(c, worker, ["default"], 7, LEASE):
            got += [lease.command_id for lease in batch]
        return got

    first, second = await asyncio.gather(drain(conn, "w1"), drain(other, "w2"))
    assert not set(first) & set(second)
    assert sorted(first + second) == sorted(f"7001:{n}" for n in range(300))
    assert len(first) + len(second) == 300


async def test_report_records_once_and_only_for_the_current_lease(conn: Connection) -> None:
    await commands.insert(conn, [command(1), command(2)])
    lease, second = await commands.claim(conn, "w1", ["default"], 2, LEASE)
    assert not await commands.report(
        conn, "w2", lease.command_id, lease.attempt, True, outcome(lease.command_id)
    )
    assert not await commands.report(
        conn, "w1", lease.command_id, lease.attempt + 1, True, outcome(lease.command_id)
    )
    assert await commands.report(conn, "w1", lease.command_id, lease.attempt, True, outcome(lease.command_id))
    done = await row(conn, lease.command_id)
    assert (done["status"], done["outcome"], done["lease_until"]) == ("done", outcome(lease.command_id), None)

    assert not await commands.report(
        conn, "w1", lease.command_id, lease.attempt, False, outcome("other", False)
    )
    assert await row(conn, lease.command_id) == done

    assert await commands.report(
        conn, "w1", second.command_id, second.attempt, False, outcome(second.command_id, False)
    )
    assert (await row(conn, second.command_id))["status"] == "failed"
    pending = await commands.pending_results(conn, EXECUTION)
    assert [(p.command_id, p.status) for p in pending] == [("7001:1", "done"), ("7001:2", "failed")]
    assert pending[1].outcome == outcome("7001:2", False)


async def test_report_after_the_lease_was_reaped_is_dropped(conn: Connection) -> None:
    await commands.insert(conn, [command(1)])
    (lease,) = await commands.claim(conn, "w1", ["default"], 1, LEASE)
    await expire(conn, lease.command_id)
    assert await commands.reap(conn) == 1
    assert not await commands.report(
        conn, "w1", lease.command_id, lease.attempt, True, outcome(lease.command_id)
    )
    state = await row(conn, lease.command_id)
    assert (state["status"], state["outcome"], state["worker_id"]) == ("ready", None, None)
    (again,) = await commands.claim(conn, "w2", ["default"], 1, LEASE)
    assert again.attempt == 2
    assert await commands.report(conn, "w2", again.command_id, again.attempt, True, outcome(again.command_id))
    assert len(await commands.pending_results(conn, EXECUTION)) == 1


async def test_report_many_accepts_only_current_leases(conn: Connection) -> None:
    await commands.insert(conn, [command(n) for n in range(3)])
    a, b, c = await commands.claim(conn, "w1", ["default"], 3, LEASE)
    reports = [
        Report("w1", a.command_id, a.attempt, True, outcome(a.command_id)),
        Report("w1", b.command_id, b.attempt + 1, True, outcome(b.command_id)),  # stale attempt
        Report("w9", c.command_id, c.attempt, True, outcome(c.command_id)),  # not the holder
        Report("w1", "7001:404", 1, True, []),  # unknown
    ]
    assert await commands.report_many(conn, reports) == {a.command_id}
    assert await commands.report_many(conn, reports) == set()
    assert [(await row(conn, x.command_id))["status"] for x in (a, b, c)] == ["done", "leased", "leased"]


async def test_heartbeat_extends_held_leases_and_names_the_lost_ones(conn: Connection) -> None:
    await commands.insert(conn, [command(n) for n in range(3)] + [command(9, execution=7002)])
    held = await commands.claim(conn, "w1", ["default"], 4, 5.0)
    ids = [lease.command_id for lease in held]
    before = (await row(conn, "7001:0"))["lease_until"]
    assert await commands.heartbeat(conn, "w1", ids, 600.0) == set()
    after = (await row(conn, "7001:0"))["lease_until"]
    assert (after - before).total_seconds() > 500

    await commands.cancel(conn, 7002)
    await commands.report(conn, "w1", "7001:1", 1, True, outcome("7001:1"))
    lost = await commands.heartbeat(conn, "w1", [*ids, "7001:unknown"], 600.0)
    assert lost == {"7002:9", "7001:1", "7001:unknown"}
    assert await commands.heartbeat(conn, "w2", ["7001:0"], 600.0) == {"7001:0"}
    assert await commands.heartbeat(conn, "w1", [], 600.0) == set()


async def test_reap_returns_expired_leases_then_fails_after_max_attempts(conn: Connection) -> None:
    await commands.insert(conn, [command(1, max_attempts=2), command(2)])
    first = await commands.claim(conn, "w1", ["default"], 2, LEASE)
    await expire(conn, "7001:1")
    assert await commands.reap(conn) == 1  # 7001:2's lease is still valid
    assert (await row(conn, "7001:2"))["status"] == "leased"
    state = await row(conn, "7001:1")
    assert (state["status"], state["attempt"], state["worker_id"]) == ("ready", 1, None)

    (second,) = await commands.claim(conn, "w2", ["default"], 1, LEASE)
    assert (second.command_id, second.attempt, first[0].attempt) == ("7001:1", 2, 1)
    await expire(conn, "7001:1")
    assert await commands.reap(conn) == 1
    state = await row(conn, "7001:1")
    assert state["status"] == "failed"
    (event,) = state["outcome"]
    assert event["event_type"] == "command.failed"
    assert (event["step"], event["command_id"]) == ("step1", "7001:1")
    assert event["data"]["index"] == 1
    assert event["data"]["error"]["kind"] == "lease_expired"
    assert event["data"]["error"]["message"] == "lease expired after 2 attempts (worker w2)"
    assert isinstance(event["timestamp"], float)
    assert [p.command_id for p in await commands.pending_results(conn, EXECUTION)] == ["7001:1"]
    assert await commands.reap(conn) == 0


async def test_release_gives_commands_back_without_using_an_attempt(conn: Connection) -> None:
    await commands.insert(conn, [command(1), command(2)])
    await commands.claim(conn, "w1", ["default"], 2, LEASE)
    assert await commands.release(conn, "w2", ["7001:1"]) == 0  # not theirs
    assert await commands.release(conn, "w1", ["7001:1", "7001:2"]) == 2
    state = await row(conn, "7001:1")
    assert (state["status"], state["attempt"], state["worker_id"]) == ("ready", 0, None)
    again = await commands.claim(conn, "w3", ["default"], 2, LEASE)
    assert [(lease.command_id, lease.attempt) for lease in again] == [("7001:1", 1), ("7001:2", 1)]


async def test_pending_results_until_marked_recorded(conn: Connection) -> None:
    await executions.create(conn, EXECUTION, 11, "p", {})
    await executions.create(conn, 7002, 11, "p", {})
    await commands.insert(conn, [command(1), command(2), command(3, execution=7002)])
    leases = await commands.claim(conn, "w1", ["default"], 3, LEASE)
    assert await commands.pending_results(conn, EXECUTION) == []
    assert await executions.with_pending_work(conn, 10) == []
    for lease in reversed(leases):
        await commands.report(conn, "w1", lease.command_id, lease.attempt, True, outcome(lease.command_id))
    assert [p.command_id for p in await commands.pending_results(conn, EXECUTION)] == ["7001:2", "7001:1"]
    assert await executions.with_pending_work(conn, 10) == [EXECUTION, 7002]
    many = await commands.pending_results_many(conn, [EXECUTION, 7002, 9999])
    assert {k: [p.command_id for p in v] for k, v in many.items()} == {
        EXECUTION: ["7001:2", "7001:1"],
        7002: ["7002:3"],
    }

    assert await commands.mark_recorded(conn, ["7001:1", "7001:2"]) == 2
    assert await commands.mark_recorded(conn, ["7001:1"]) == 0
    assert await commands.pending_results(conn, EXECUTION) == []
    assert (await row(conn, "7001:1"))["recorded"] is True
    assert await executions.with_pending_work(conn, 10) == [7002]


async def test_cancel_stops_ready_and_leased_commands_of_one_execution(conn: Connection) -> None:
    await commands.insert(conn, [command(1), command(2), command(3), command(4, execution=7002)])
    (leased,) = await commands.claim(conn, "w1", ["default"], 1, LEASE)
    (done,) = await commands.claim(conn, "w1", ["default"], 1, LEASE)
    await commands.report(conn, "w1", done.command_id, done.attempt, True, outcome(done.command_id))

    assert await commands.cancel(conn, EXECUTION) == ["7001:1", "7001:3"]
    assert (await row(conn, "7001:2"))["status"] == "done"
    assert await commands.heartbeat(conn, "w1", [leased.command_id], LEASE) == {leased.command_id}
    assert not await commands.report(conn, "w1", leased.command_id, leased.attempt, True, outcome("x"))
    assert [lease.command_id for lease in await commands.claim(conn, "w1", ["default"], 10, LEASE)] == [
        "7002:4"
    ]
    assert await commands.cancel(conn, EXECUTION) == []


async def synchronous_commit(conn: Connection) -> str:
    row = await (await conn.execute("SHOW synchronous_commit")).fetchone()
    assert row is not None
    return str(row[0])


async def test_only_claims_heartbeats_and_releases_skip_the_wal_flush(conn: Connection) -> None:
    await commands.insert(conn, [command(1), command(2)])
    assert await synchronous_commit(conn) == "on"
    for name, step in [
        ("claim", lambda: commands.claim(conn, "w1", ["default"], 2, LEASE)),
        ("heartbeat", lambda: commands.heartbeat(conn, "w1", ["7001:1"], LEASE)),
        ("release", lambda: commands.release(conn, "w1", ["7001:2"])),
    ]:
        async with conn.transaction():
            await step()
            assert await synchronous_commit(conn) == "off", name
        assert await synchronous_commit(conn) == "on", name  # for that transaction only
    async with conn.transaction():
        assert await commands.report(conn, "w1", "7001:1", 1, True, outcome("7001:1"))
        assert await synchronous_commit(conn) == "on"
