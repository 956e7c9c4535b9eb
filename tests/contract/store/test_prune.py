"""Retention: only ended executions older than the cutoff go, whole, and never before every export
sink has them; a dry run changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from noetl.engine.events import Event
from noetl.store import events, executions, exports, prune
from noetl.store.db import Connection

OLD = datetime.now(UTC) - timedelta(days=40)


async def _execution(conn: Connection, execution_id: int, status: str, ended: datetime | None) -> None:
    await executions.create(conn, execution_id, None, "t/p", {})
    await events.append(conn, execution_id, 1, [Event("step.enter", "s", None, {}, 1.0) for _ in range(3)])
    await conn.execute(
        "INSERT INTO noetl.command (command_id, execution_id, step) VALUES (%s, %s, 's')",
        (f"{execution_id}:1", execution_id),
    )
    await conn.execute(
        "UPDATE noetl.execution SET status = %s, completed_at = %s WHERE execution_id = %s",
        (status, ended, execution_id),
    )


async def _ids(conn: Connection) -> list[int]:
    cursor = await conn.execute("SELECT execution_id FROM noetl.execution ORDER BY 1")
    return [row[0] for row in await cursor.fetchall()]


async def test_only_old_ended_executions_go_whole(conn: Connection) -> None:
    await _execution(conn, 1, "COMPLETED", OLD)
    await _execution(conn, 2, "FAILED", OLD)
    await _execution(conn, 3, "COMPLETED", datetime.now(UTC))  # ended recently
    await _execution(conn, 4, "RUNNING", None)  # old but running
    await conn.execute("UPDATE noetl.execution SET created_at = %s WHERE execution_id = 4", (OLD,))
    cutoff = datetime.now(UTC) - timedelta(days=30)

    dry = await prune.prune(conn, cutoff, dry_run=True)
    assert (dry.executions, dry.events, dry.commands) == (2, 6, 2)
    assert await _ids(conn) == [1, 2, 3, 4]

    done = await prune.prune(conn, cutoff, batch=1)  # batch of one: resumes across batches
    assert (done.executions, done.events, done.commands) == (2, 6, 2)
    assert await _ids(conn) == [3, 4]
    assert await events.count(conn, 1) == 0 and await events.count(conn, 3) == 3
    cursor = await conn.execute("SELECT count(*) FROM noetl.command WHERE execution_id IN (1, 2)")
    assert (await cursor.fetchone()) == (0,)
    assert set(done.sizes_after) == {"event", "command", "execution", "result"}


async def test_nothing_goes_before_every_export_sink_has_it(conn: Connection) -> None:
    await _execution(conn, 1, "COMPLETED", OLD)
    await _execution(conn, 2, "COMPLETED", OLD)
    rows = await exports.batch(conn, exports.Position(), 100)
    first = [r for r in rows if r["execution_id"] == 1]
    await exports.advance(conn, "ahead", exports.position_of(rows[-1]), len(rows))  # has everything
    await exports.advance(conn, "behind", exports.position_of(first[-1]), len(first))  # has execution 1 only
    cutoff = datetime.now(UTC) - timedelta(days=30)

    done = await prune.prune(conn, cutoff)
    assert (done.executions, done.held_for_export) == (1, 1)
    assert await _ids(conn) == [2]
