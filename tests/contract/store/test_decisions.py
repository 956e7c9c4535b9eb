"""One orchestration decision: ``decisions.open`` (reports + locks + waiting outcomes) and ``write``.

These are the two statements of a worker's fast path (report, record and decide in one transaction)
and of the server's passes. The rules: an execution another transaction holds is skipped, not
waited for; a report of a locked execution is recorded at once, a report of any other keeps its
outcome for the server; only the current lease may report; ``write`` appends the events, enqueues
commands ready (one notification per pool) or leased to the reporting worker, and moves the row.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from noetl.engine.events import Event
from noetl.store import commands, db, decisions, events, executions
from noetl.store.db import COMMANDS_CHANNEL, Connection
from noetl.store.ports import NewCommand, Report

from .test_notify import mark, received_until

EXECUTION = 9001
OTHER = 9002
LEASE = 30.0


def command(n: int, execution: int = EXECUTION, pool: str = "default") -> NewCommand:
    return NewCommand(f"{execution}:{n}", execution, 5, f"s{n}", None, {"n": n}, pool=pool)


def report(n: int, attempt: int = 1, execution: int = EXECUTION, worker: str = "w1") -> Report:
    cid = f"{execution}:{n}"
    done = [
        {
            "event_type": "call.done",
            "step": f"s{n}",
            "command_id": cid,
            "data": {"result": n},
            "timestamp": 2.0,
        }
    ]
    return Report(worker, cid, attempt, True, done, execution)


async def leased(conn: Connection, *numbers: int, execution: int = EXECUTION) -> None:
    """Executions RUNNING, commands inserted and claimed by w1 (attempt 1)."""
    for eid in {EXECUTION, OTHER, execution}:
        if await executions.get(conn, eid) is None:
            await executions.create(conn, eid, 5, "p", {})
    await commands.insert(conn, [command(n, execution) for n in numbers])
    claimed = await commands.claim(conn, "w1", ["default"], len(numbers), LEASE)
    assert len(claimed) == len(numbers)


async def command_row(conn: Connection, command_id: str) -> dict[str, Any]:
    cur = await conn.execute(
        "SELECT status, worker_id, attempt, recorded, outcome, lease_until IS NOT NULL"
        " FROM noetl.command WHERE command_id = %s",
        [command_id],
    )
    found = await cur.fetchone()
    assert found is not None
    names = ["status", "worker_id", "attempt", "recorded", "outcome", "has_lease"]
    return dict(zip(names, found, strict=True))


async def test_open_locks_records_the_reports_and_returns_the_waiting_outcomes(conn: Connection) -> None:
    await leased(conn, 1, 2)
    # 9001:1 was reported earlier through the plain path: it waits, unrecorded
    assert await commands.report(conn, "w1", "9001:1", 1, True, [{"event_type": "call.done", "data": {}}])
    async with conn.transaction():
        opened = await decisions.open(conn, [EXECUTION], [report(2)])
        assert opened.accepted == {"9001:2"}
        assert [r.execution_id for r in opened.rows] == [EXECUTION]
        assert [p.command_id for p in opened.pending[EXECUTION]] == ["9001:1", "9001:2"]
        assert opened.pending[EXECUTION][1].outcome == report(2).events
        assert opened.recorded == {"9001:2"}
    mine = await command_row(conn, "9001:2")
    assert (mine["status"], mine["recorded"], mine["outcome"]) == ("done", True, None)
    earlier = await command_row(conn, "9001:1")
    assert (earlier["status"], earlier["recorded"]) == ("done", False)  # write marks it, not open


async def test_an_execution_held_elsewhere_is_skipped_and_its_report_kept_for_the_server(
    conn: Connection, other: Connection
) -> None:
    await leased(conn, 1)
    async with other.transaction():
        assert [r.execution_id for r in await executions.lock(other, [EXECUTION])] == [EXECUTION]

        async def reporting() -> decisions.Opened:
            async with conn.transaction():
                return await decisions.open(conn, [EXECUTION], [report(1)])

        # a deadline, not a timing: an open that waited for the lock would wait for this very test
        opened = await asyncio.wait_for(reporting(), 30)
    assert opened.accepted == {"9001:1"}
    assert opened.rows == [] and opened.pending == {} and opened.recorded == set()
    row = await command_row(conn, "9001:1")
    assert (row["status"], row["recorded"]) == ("done", False)
    assert row["outcome"] == report(1).events
    waiting = await commands.pending_results_many(conn, [EXECUTION])
    assert [p.command_id for p in waiting[EXECUTION]] == ["9001:1"]


async def test_open_accepts_only_the_current_lease(conn: Connection) -> None:
    await leased(conn, 1)
    async with conn.transaction():
        opened = await decisions.open(conn, [EXECUTION], [report(1, attempt=2), report(1, worker="w2")])
    assert opened.accepted == set() and opened.recorded == set()
    assert (await command_row(conn, "9001:1"))["status"] == "leased"


async def test_open_skips_executions_that_are_not_running(conn: Connection) -> None:
    await leased(conn, 1)
    await executions.update(conn, EXECUTION, status="COMPLETED", last_event_id=0)
    async with conn.transaction():
        opened = await decisions.open(conn, [EXECUTION], [report(1)])
    assert opened.rows == [] and opened.recorded == set()


async def test_write_appends_enqueues_leases_marks_and_moves_in_one_statement(
    store_url: str, conn: Connection, other: Connection
) -> None:
    await leased(conn, 1)
    assert await commands.report(conn, "w1", "9001:1", 1, True, [])
    new = [command(2), command(3, pool="io"), command(4)]
    written = [
        Event("call.done", "s1", "9001:1", {"result": 1}, 2.0, 1),
        Event("command.issued", "s2", "9001:2", {"index": None}, 2.0, 2),
    ]
    async with db.listen(store_url, [COMMANDS_CHANNEL]) as listener:
        async with conn.transaction():
            await decisions.write(
                conn,
                EXECUTION,
                written,
                new,
                ["9001:1"],
                decisions.Projection("RUNNING", 2),
                leased=frozenset({"9001:2"}),
                worker_id="w9",
                lease_seconds=LEASE,
            )
        notes = await received_until(listener, await mark(other))
    assert sorted(notes) == [(COMMANDS_CHANNEL, "default"), (COMMANDS_CHANNEL, "io")]
    assert [(e.id, e.name, e.data) for e in await events.read(conn, EXECUTION)] == [
        (1, "call.done", {"result": 1}),
        (2, "command.issued", {"index": None}),
    ]
    mine = await command_row(conn, "9001:2")
    assert (mine["status"], mine["worker_id"], mine["attempt"], mine["has_lease"]) == (
        "leased",
        "w9",
        1,
        True,
    )
    for cid in ("9001:3", "9001:4"):
        ready = await command_row(conn, cid)
        assert (ready["status"], ready["worker_id"], ready["attempt"]) == ("ready", None, 0)
    assert (await command_row(conn, "9001:1"))["recorded"] is True
    row = await executions.get(conn, EXECUTION)
    assert row is not None and (row.status, row.last_event_id, row.completed_at) == ("RUNNING", 2, None)
    # the leased command is the worker's: another worker's claim does not get it
    assert [lease.command_id for lease in await commands.claim(conn, "w2", ["default"], 10, LEASE)] == [
        "9001:4"
    ]


async def test_write_of_a_final_decision_sets_result_and_error(conn: Connection) -> None:
    await leased(conn, 1)
    final = decisions.Projection(
        "FAILED", 3, {"partial": [1]}, {"kind": "python", "message": "boom"}, final=True
    )
    async with conn.transaction():
        await decisions.write(conn, EXECUTION, [], [], [], final)
    row = await executions.get(conn, EXECUTION)
    assert row is not None
    assert (row.status, row.last_event_id, row.result) == ("FAILED", 3, {"partial": [1]})
    assert row.error == {"kind": "python", "message": "boom"} and row.completed_at is not None
    moved = decisions.Projection("FAILED", 4)  # not final: result and error keep their values
    await decisions.write(conn, EXECUTION, [], [], [], moved)
    again = await executions.get(conn, EXECUTION)
    assert again is not None and again.result == {"partial": [1]} and again.last_event_id == 4


async def test_open_that_waits_takes_the_lock_once_the_holder_commits(
    conn: Connection, other: Connection
) -> None:
    """The worker's fast path waits for a pass that holds the execution, then records its report."""
    await leased(conn, 1)
    pid = conn.info.backend_pid
    async with other.transaction():
        assert [r.execution_id for r in await executions.lock(other, [EXECUTION])] == [EXECUTION]

        async def reporting() -> decisions.Opened:
            async with conn.transaction():
                return await decisions.open(conn, [EXECUTION], [report(1)], wait=True)

        task = asyncio.create_task(reporting())
        deadline = time.monotonic() + 10
        while True:  # until the reporter's backend is seen waiting for the row lock
            cur = await other.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
            found = await cur.fetchone()
            if found is not None and found[0] == "Lock":
                break
            assert time.monotonic() < deadline, "the reporter never waited for the lock"
            assert not task.done(), "open returned while another transaction held the lock"
            await asyncio.sleep(0.01)
    opened = await asyncio.wait_for(task, 10)
    assert [r.execution_id for r in opened.rows] == [EXECUTION]
    assert opened.recorded == {"9001:1"}
    assert (await command_row(conn, "9001:1"))["recorded"] is True
