"""Fixtures for the scheduling tests: a migrated database per module, empty tables per test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from noetl.store import db, migrate
from noetl.store.db import Connection

TABLES = (
    "catalog", "execution", "event", "command", "runtime", "result",
    "global_resource", "admission", "schedule", "trigger",
)  # fmt: skip
EMPTY = "; ".join(f"DELETE FROM noetl.{table}" for table in TABLES)


@pytest.fixture(scope="module")
def store_url(pg_database: str) -> str:
    asyncio.run(migrate.apply(pg_database))
    return pg_database


@pytest.fixture
async def conn(store_url: str) -> AsyncIterator[Connection]:
    connection = await db.connect(store_url)
    await connection.execute(EMPTY)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def other(store_url: str) -> AsyncIterator[Connection]:
    connection = await db.connect(store_url)
    try:
        yield connection
    finally:
        await connection.close()
