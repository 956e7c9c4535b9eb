"""Executions: create, read, list, lock with SKIP LOCKED, update, cancellation requests, children."""

from __future__ import annotations

import asyncio

from noetl.store import executions
from noetl.store.db import Connection


async def test_create_then_get(conn: Connection) -> None:
    await executions.create(conn, 1, 10, "demo/a", {"region": "eu"})
    row = await executions.get(conn, 1)
    assert row is not None
    assert (row.execution_id, row.catalog_id, row.path, row.status) == (1, 10, "demo/a", "RUNNING")
    assert (row.payload, row.result, row.error, row.last_event_id) == ({"region": "eu"}, None, None, 0)
    assert (row.parent_execution_id, row.cancel_requested, row.completed_at) == (None, False, None)
    assert row.created_at is not None
    assert await executions.get(conn, 2) is None


async def test_list_filters_newest_first(conn: Connection) -> None:
    await executions.create(conn, 1, 10, "demo/a", {})
    await executions.create(conn, 2, 10, "demo/b", {}, parent_execution_id=1)
    await executions.create(conn, 3, 20, "demo/a", None)
    await executions.update(conn, 3, status="COMPLETED", last_event_id=5)
    ids = lambda rows: [r.execution_id for r in rows]  # noqa: E731
    assert ids(await executions.list(conn)) == [3, 2, 1]
    assert ids(await executions.list(conn, status="RUNNING")) == [2, 1]
    assert ids(await executions.list(conn, path="demo/a")) == [3, 1]
    assert ids(await executions.list(conn, parent=1)) == [2]
    assert ids(await executions.list(conn, catalog_id=20)) == [3]
    assert ids(await executions.list(conn, limit=1, offset=1)) == [2]


async def test_lock_skips_rows_another_transaction_holds_and_finished_ones(
    conn: Connection, other: Connection
) -> None:
    for n in (1, 2, 3):
        await executions.create(conn, n, None, "p", {})
    await executions.update(conn, 3, status="FAILED", last_event_id=1)
    async with conn.transaction():
        assert [r.execution_id for r in await executions.lock(conn, [1])] == [1]
        async with other.transaction():
            theirs = await asyncio.wait_for(executions.lock(other, [1, 2, 3]), 5)
            assert [r.execution_id for r in theirs] == [2]
    async with other.transaction():
        assert [r.execution_id for r in await executions.lock(other, [1, 2, 3])] == [1, 2]
    assert await executions.lock(conn, []) == []


async def test_update_moves_status_and_keeps_what_is_not_given(conn: Connection) -> None:
    await executions.create(conn, 1, None, "p", {})
    assert await executions.update(conn, 1, status="RUNNING", last_event_id=3, result={"partial": True})
    row = await executions.get(conn, 1)
    assert row is not None and (row.last_event_id, row.result, row.completed_at) == (
        3,
        {"partial": True},
        None,
    )

    assert await executions.update(
        conn, 1, status="FAILED", last_event_id=9, error={"kind": "tool", "message": "x"}
    )
    row = await executions.get(conn, 1)
    assert row is not None
    assert (row.status, row.last_event_id, row.result) == ("FAILED", 9, {"partial": True})
    assert row.error == {"kind": "tool", "message": "x"}
    assert row.completed_at is not None and row.updated_at is not None

    assert await executions.update(conn, 1, status="FAILED", last_event_id=9, result=None, error=None)
    row = await executions.get(conn, 1)
    assert row is not None and (row.result, row.error) == (None, None)
    assert not await executions.update(conn, 404, status="COMPLETED", last_event_id=1)


async def test_request_cancel_flags_running_executions_only(conn: Connection) -> None:
    await executions.create(conn, 1, None, "p", {})
    await executions.create(conn, 2, None, "p", {})
    await executions.update(conn, 2, status="COMPLETED", last_event_id=1)
    assert await executions.with_pending_work(conn) == []
    assert await executions.request_cancel(conn, 1, "first reason")
    assert await executions.request_cancel(conn, 1, "second reason")
    assert not await executions.request_cancel(conn, 2, "too late")
    assert not await executions.request_cancel(conn, 3, "no such execution")
    row = await executions.get(conn, 1)
    assert row is not None and (row.cancel_requested, row.cancel_reason) == (True, "first reason")
    assert await executions.with_pending_work(conn) == [1]
    await executions.update(conn, 1, status="CANCELLED", last_event_id=2)
    assert await executions.with_pending_work(conn) == []


async def test_children_direct_and_recursive(conn: Connection) -> None:
    await executions.create(conn, 1, None, "parent", {})
    await executions.create(conn, 2, None, "child", {}, parent_execution_id=1)
    await executions.create(conn, 3, None, "child", {}, parent_execution_id=1)
    await executions.create(conn, 4, None, "grandchild", {}, parent_execution_id=3)
    assert await executions.children(conn, 1) == [2, 3]
    assert await executions.children(conn, 1, recursive=True) == [2, 3, 4]
    assert await executions.children(conn, 4) == []
