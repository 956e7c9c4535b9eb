"""Export cursors: commit order, nothing skipped behind a running transaction, durable positions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from noetl.engine.events import Event
from noetl.store import events, executions, exports
from noetl.store.db import Connection

SINK = "test-sink"


async def _execution(conn: Connection, execution_id: int) -> None:
    await executions.create(conn, execution_id, None, f"t/p{execution_id}", {})


def _events(n: int) -> list[Event]:
    return [Event("step.enter", f"s{i}", None, {"i": i}, 1_700_000_000.0 + i) for i in range(n)]


async def test_a_new_sink_starts_at_the_beginning_and_reads_in_commit_order(conn: Connection) -> None:
    await _execution(conn, 1)
    await _execution(conn, 2)
    await events.append(conn, 2, 1, _events(2))  # committed first
    await events.append(conn, 1, 1, _events(3))

    cursor = await exports.cursor(conn, SINK)
    assert cursor.position == exports.Position() and cursor.exported == 0
    rows = await exports.batch(conn, cursor.position, 100)
    assert [(r["execution_id"], r["event_id"]) for r in rows] == [(2, 1), (2, 2), (1, 1), (1, 2), (1, 3)]
    assert rows[0]["path"] == "t/p2"


async def test_batches_resume_after_the_cursor_and_count_what_was_taken(conn: Connection) -> None:
    await _execution(conn, 1)
    await events.append(conn, 1, 1, _events(5))
    first = await exports.batch(conn, exports.Position(), 2)
    await exports.advance(conn, SINK, exports.position_of(first[-1]), len(first))

    cursor = await exports.cursor(conn, SINK)
    rest = await exports.batch(conn, cursor.position, 100)
    assert [r["event_id"] for r in first + rest] == [1, 2, 3, 4, 5]
    assert cursor.exported == 2
    behind, seconds = await exports.lag(conn, cursor.position)
    assert behind == 3 and seconds >= 0
    assert (await exports.lag(conn, exports.position_of(rest[-1])))[0] == 0


async def test_no_event_is_skipped_behind_a_transaction_still_running(
    conn: Connection, other: Connection
) -> None:
    """A transaction that began first but commits last must not have its events land behind a
    cursor that already moved past later transactions' events."""
    await _execution(conn, 1)
    await _execution(conn, 2)
    async with other.transaction():
        await events.append(other, 1, 1, _events(1))  # older transaction, still open
        await events.append(conn, 2, 1, _events(1))  # newer one, committed
        assert await exports.batch(conn, exports.Position(), 100) == []
    rows = await exports.batch(conn, exports.Position(), 100)
    assert [(r["execution_id"], r["event_id"]) for r in rows] == [(1, 1), (2, 1)]


async def test_failures_are_remembered_until_a_batch_succeeds(conn: Connection) -> None:
    await exports.cursor(conn, SINK)
    await exports.failed(conn, SINK, "ClickHouse at http://127.0.0.1:1/: insert failed: ConnectError")
    assert (await exports.cursor(conn, SINK)).last_error is not None
    await exports.advance(conn, SINK, exports.Position("5", 1, 1), 1)
    assert (await exports.cursor(conn, SINK)).last_error is None


async def test_since_pages_events_written_after_a_time(conn: Connection) -> None:
    await _execution(conn, 1)
    await events.append(conn, 1, 1, _events(3))
    future = datetime.now(UTC) + timedelta(hours=1)
    assert await exports.since(conn, future, exports.Position(), 10) == []
    past = datetime.now(UTC) - timedelta(hours=1)
    page = await exports.since(conn, past, exports.Position(), 2)
    rest = await exports.since(conn, past, exports.position_of(page[-1]), 2)
    assert [r["event_id"] for r in page + rest] == [1, 2, 3]
