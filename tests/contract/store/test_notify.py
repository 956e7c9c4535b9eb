"""Notifications: one per committed batch, sent with the change, received by a LISTEN connection.

Notifications arrive in commit order, so the tests send a marker after the change and read up to
it: whatever the change sent has then arrived, with no sleeping and no guessing at timing.
"""

from __future__ import annotations

import time
import uuid
from contextlib import aclosing

import pytest

from noetl.store import commands, db, executions
from noetl.store.db import COMMANDS_CHANNEL, RESULTS_CHANNEL, Connection, Listener
from noetl.store.errors import StoreUnavailable
from noetl.store.ports import NewCommand

DEADLINE = 10.0


def command(n: int, pool: str, execution: int = 8001) -> NewCommand:
    return NewCommand(f"{execution}:{n}", execution, None, "s", None, {}, pool=pool)


async def mark(conn: Connection, channel: str = COMMANDS_CHANNEL) -> str:
    marker = f"marker-{uuid.uuid4().hex}"
    await conn.execute("SELECT pg_notify(%s, %s)", [channel, marker])
    return marker


async def received_until(listener: Listener, marker: str) -> list[tuple[str, str]]:
    """Everything received before ``marker``; fails if the marker does not come within the deadline."""
    got: list[tuple[str, str]] = []
    deadline = time.monotonic() + DEADLINE
    while (left := deadline - time.monotonic()) > 0:
        for channel, payload in await listener.wait(left):
            if payload == marker:
                return got
            got.append((channel, payload))
    raise AssertionError(f"marker not received within {DEADLINE}s; got {got}")


async def test_insert_notifies_each_pool_once_when_the_batch_commits(
    store_url: str, conn: Connection, other: Connection
) -> None:
    async with db.listen(store_url, [COMMANDS_CHANNEL, RESULTS_CHANNEL]) as listener:
        async with conn.transaction():
            await commands.insert(conn, [command(1, "a"), command(2, "b"), command(3, "a")])
            assert await received_until(listener, await mark(other)) == []  # not before the commit
        assert sorted(await received_until(listener, await mark(other))) == [
            (COMMANDS_CHANNEL, "a"),
            (COMMANDS_CHANNEL, "b"),
        ]


async def test_report_notifies_results_and_release_notifies_commands(
    store_url: str, conn: Connection
) -> None:
    await commands.insert(conn, [command(1, "a"), command(2, "a", execution=8002), command(3, "b")])
    leases = await commands.claim(conn, "w1", ["a", "b"], 3, 30.0)
    async with db.listen(store_url, [COMMANDS_CHANNEL, RESULTS_CHANNEL]) as listener:
        first, second, third = leases
        await commands.report(conn, "w1", first.command_id, first.attempt, True, [])
        await commands.report(conn, "w1", first.command_id, first.attempt, True, [])  # dropped: no notify
        await commands.release(conn, "w1", [second.command_id, third.command_id])
        got = await received_until(listener, await mark(conn))
        assert got[0] == (RESULTS_CHANNEL, "8001")
        assert sorted(got[1:]) == [(COMMANDS_CHANNEL, "a"), (COMMANDS_CHANNEL, "b")]


async def test_reap_and_cancel_request_notify(store_url: str, conn: Connection) -> None:
    await executions.create(conn, 8003, None, "p", {})
    await commands.insert(
        conn, [command(1, "a"), NewCommand("8001:2", 8001, None, "s", None, {}, max_attempts=1)]
    )
    await commands.claim(conn, "w1", ["a", "default"], 2, 30.0)
    await conn.execute("UPDATE noetl.command SET lease_until = now() - interval '1 second'")
    async with db.listen(store_url, [COMMANDS_CHANNEL, RESULTS_CHANNEL]) as listener:
        assert await commands.reap(conn) == 2
        assert await executions.request_cancel(conn, 8003, "user asked")
        assert sorted(await received_until(listener, await mark(conn))) == [
            (COMMANDS_CHANNEL, "a"),
            (RESULTS_CHANNEL, "8001"),
            (RESULTS_CHANNEL, "8003"),
        ]


async def test_iterating_a_listener_yields_channel_and_payload(store_url: str, conn: Connection) -> None:
    async with db.listen(store_url, [RESULTS_CHANNEL]) as listener:
        await conn.execute("SELECT pg_notify(%s, %s)", [RESULTS_CHANNEL, "42"])
        async with aclosing(aiter(listener)) as notes:
            async for note in notes:
                assert note == (RESULTS_CHANNEL, "42")
                break


async def test_a_listener_that_lost_its_connection_subscribes_again(store_url: str, conn: Connection) -> None:
    async with db.listen(store_url, [RESULTS_CHANNEL]) as listener:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
        )
        with pytest.raises(StoreUnavailable):
            deadline = time.monotonic() + DEADLINE
            while time.monotonic() < deadline:
                await listener.wait(deadline - time.monotonic())
        await listener.start()  # a fresh connection, subscribed again
        assert await received_until(listener, await mark(conn, RESULTS_CHANNEL)) == []
