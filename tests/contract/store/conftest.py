"""Fixtures for the store's contract tests: a migrated database per module, a clean slate per test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from noetl.store import db, migrate
from noetl.store.db import Connection

TABLES = ("catalog", "execution", "event", "command", "credential", "runtime", "result", "export_cursor")
# DELETE, not TRUNCATE: the tables are small here, and TRUNCATE rewrites files (slow on every test).
EMPTY = "; ".join(f"DELETE FROM noetl.{table}" for table in TABLES)


@pytest.fixture(scope="module")
def store_url(pg_database: str) -> str:
    """This module's database with every migration applied."""
    asyncio.run(migrate.apply(pg_database))
    return pg_database


@pytest.fixture
async def conn(store_url: str) -> AsyncIterator[Connection]:
    """An autocommit connection to empty tables."""
    connection = await db.connect(store_url)
    await connection.execute(EMPTY)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def other(store_url: str) -> AsyncIterator[Connection]:
    """A second connection, for races and locks."""
    connection = await db.connect(store_url)
    try:
        yield connection
    finally:
        await connection.close()
