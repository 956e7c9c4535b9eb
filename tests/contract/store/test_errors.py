"""Driver errors leave the store as NoETL errors with the right HTTP status."""

from __future__ import annotations

import socket

import pytest

from noetl.errors import NoetlError
from noetl.store import commands, db, events
from noetl.store.db import Connection
from noetl.store.errors import StoreConflict, StoreError, StoreUnavailable
from noetl.store.ports import NewCommand


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_database_is_unavailable() -> None:
    url = f"postgresql://postgres:secret-pw@127.0.0.1:{closed_port()}/noetl?connect_timeout=2"
    with pytest.raises(StoreUnavailable) as caught:
        await db.connect(url)
    assert caught.value.http_status == 503 and isinstance(caught.value, NoetlError)
    assert "secret-pw" not in str(caught.value)
    assert caught.value.__cause__ is not None


async def test_duplicate_command_id_is_a_conflict(conn: Connection) -> None:
    command = NewCommand("1:1", 1, None, "s", None, {})
    await commands.insert(conn, [command])
    with pytest.raises(StoreConflict, match=r"commands\.insert"):
        await commands.insert(conn, [command])


async def test_a_closed_connection_is_unavailable(store_url: str) -> None:
    conn = await db.connect(store_url)
    await conn.close()
    with pytest.raises(StoreUnavailable):
        await commands.depth(conn)


async def test_other_refusals_are_store_errors(conn: Connection) -> None:
    with pytest.raises(StoreError) as caught:
        await events.read(conn, 1, limit=-1)
    assert type(caught.value) is StoreError and caught.value.http_status == 500
    assert "LIMIT" in str(caught.value) and caught.value.sqlstate is not None


async def test_pool_hands_out_autocommit_connections(store_url: str) -> None:
    pool = await db.pool(store_url, min_size=1, max_size=2)
    try:
        async with pool.connection() as conn:
            assert conn.autocommit
            assert await commands.depth(conn) == {}
    finally:
        await pool.close()


async def test_pool_to_an_unreachable_database_is_unavailable() -> None:
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/noetl?connect_timeout=1"
    with pytest.raises(StoreUnavailable, match="opening a pool"):
        await db.pool(url, timeout=0.5)
