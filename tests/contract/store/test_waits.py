"""Waiting commands and compact finished rows (issue 19): ``commands.suspend``, ``wake_waiters``,
``wake_due``, ``cancel`` of waiting commands, and what finished rows keep.

A leased command whose run waits is parked (``waiting``: no worker, no lease, its attempt given
back) or made ready at once when what it waits for has ended; only the current lease may park it.
The end of the child wakes it; the reaper's sweep wakes it once ``wake_at`` has passed, or when its
child has ended (a safety net). A finished row drops its context when it finishes and its outcome
once recorded.
"""

from __future__ import annotations

from typing import Any

from noetl.store import commands, decisions, executions
from noetl.store.db import Connection

from .test_decisions import EXECUTION, LEASE, command, leased, report

CHILD = 9101
WAIT = {"kind": "playbook", "execution_id": str(CHILD)}


async def row(conn: Connection, command_id: str) -> dict[str, Any]:
    cur = await conn.execute(
        "SELECT status, worker_id, attempt, lease_until IS NOT NULL, wake_at IS NOT NULL, context::text,"
        " outcome::text FROM noetl.command WHERE command_id = %s",
        [command_id],
    )
    found = await cur.fetchone()
    assert found is not None
    names = ["status", "worker_id", "attempt", "has_lease", "has_wake", "context", "outcome"]
    return dict(zip(names, found, strict=True))


async def child_of(conn: Connection, command_id: str) -> None:
    await executions.create_child(conn, CHILD, 5, "child", {}, EXECUTION, f"{command_id}#0")


async def test_a_parked_command_holds_no_worker_and_its_childs_end_makes_it_ready(conn: Connection) -> None:
    await leased(conn, 1)
    cid = f"{EXECUTION}:1"
    await child_of(conn, cid)
    assert await commands.suspend(conn, "w2", cid, 1, wait=WAIT, ready=False, seconds=None) is None
    assert await commands.suspend(conn, "w1", cid, 2, wait=WAIT, ready=False, seconds=None) is None
    assert await commands.suspend(conn, "w1", cid, 1, wait=WAIT, ready=False, seconds=None) == "waiting"
    parked = await row(conn, cid)
    assert parked["status"] == "waiting" and parked["worker_id"] is None and parked["attempt"] == 0
    assert not parked["has_lease"] and not parked["has_wake"] and parked["context"] != "{}"
    assert await commands.claim(conn, "w1", ["default"], 5, LEASE) == []  # nothing to claim
    assert await commands.wake_due(conn) == 0  # no timeout, and the child still runs

    await executions.update(conn, CHILD, status="COMPLETED", last_event_id=3)
    await commands.wake_waiters(conn, [CHILD])
    assert (await row(conn, cid))["status"] == "ready"
    [again] = await commands.claim(conn, "w1", ["default"], 5, LEASE)
    assert again.command_id == cid and again.attempt == 1  # waiting cost no attempt
    assert again.context == {"n": 1}


async def test_a_command_whose_child_already_ended_is_ready_at_once(conn: Connection) -> None:
    await leased(conn, 1)
    cid = f"{EXECUTION}:1"
    assert await commands.suspend(conn, "w1", cid, 1, wait=WAIT, ready=True, seconds=5.0) == "ready"
    ready = await row(conn, cid)
    assert ready["status"] == "ready" and not ready["has_wake"] and ready["attempt"] == 0


async def test_the_sweep_wakes_timed_out_waits_and_waits_whose_child_ended(conn: Connection) -> None:
    await leased(conn, 1, 2)
    first, second = f"{EXECUTION}:1", f"{EXECUTION}:2"
    await child_of(conn, second)
    assert await commands.suspend(conn, "w1", first, 1, wait={"kind": "timer"}, ready=False, seconds=0.0)
    assert await commands.suspend(conn, "w1", second, 1, wait=WAIT, ready=False, seconds=3600.0)
    assert await commands.wake_due(conn) == 1  # the first one's time is up
    assert (await row(conn, first))["status"] == "ready"
    assert (await row(conn, second))["status"] == "waiting"
    await executions.update(conn, CHILD, status="FAILED", last_event_id=3)
    assert await commands.wake_due(conn) == 1  # its child ended (a lost wake-up is caught here)
    assert (await row(conn, second))["status"] == "ready"


async def test_cancelling_an_execution_cancels_its_waiting_commands(conn: Connection) -> None:
    await leased(conn, 1)
    cid = f"{EXECUTION}:1"
    await commands.suspend(conn, "w1", cid, 1, wait=WAIT, ready=False, seconds=None)
    assert await commands.cancel(conn, EXECUTION) == [cid]
    cancelled = await row(conn, cid)
    assert cancelled["status"] == "cancelled" and cancelled["context"] == "{}"


async def test_finished_rows_drop_their_context_and_once_recorded_their_outcome(conn: Connection) -> None:
    await leased(conn, 1, 2, 3)
    # reported alone: done, context gone, outcome kept until recorded
    assert await commands.report(conn, "w1", f"{EXECUTION}:1", 1, True, report(1).events)
    reported = await row(conn, f"{EXECUTION}:1")
    assert reported["context"] == "{}" and reported["outcome"] is not None
    assert await commands.mark_recorded(conn, [f"{EXECUTION}:1"]) == 1
    assert (await row(conn, f"{EXECUTION}:1"))["outcome"] is None
    # reported in a batch, recorded by a decision's write
    assert await commands.report_many(conn, [report(2)]) == {f"{EXECUTION}:2"}
    assert (await row(conn, f"{EXECUTION}:2"))["context"] == "{}"
    projection = decisions.Projection("RUNNING", 0)
    async with conn.transaction():
        await decisions.write(conn, EXECUTION, [], [], [f"{EXECUTION}:2"], projection)
    assert (await row(conn, f"{EXECUTION}:2"))["outcome"] is None
    # reported through the worker's fast path (open): recorded at once, nothing kept
    async with conn.transaction():
        opened = await decisions.open(conn, [EXECUTION], [report(3)], wait=True)
    assert opened.accepted == {f"{EXECUTION}:3"}
    done = await row(conn, f"{EXECUTION}:3")
    assert done["context"] == "{}" and done["outcome"] is None
    # a command still queued keeps its context
    await commands.insert(conn, [command(4)])
    assert (await row(conn, f"{EXECUTION}:4"))["context"] != "{}"
