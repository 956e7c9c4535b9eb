"""Migrations: applied once, idempotent, serialised, and equal to ``schema.sql``."""

from __future__ import annotations

import asyncio

import pytest

from noetl.store import db, migrate
from noetl.store.errors import StoreError

SCHEMA_DUMP = """
SELECT 'relation', c.relname, c.relkind::text || ' ' || coalesce(array_to_string(c.reloptions, ','), '')
FROM pg_class AS c WHERE c.relnamespace = 'noetl'::regnamespace
UNION ALL
SELECT 'column', table_name || '.' || column_name,
       concat_ws(' ', row_number() OVER (PARTITION BY table_name ORDER BY ordinal_position),
                 data_type, udt_name, 'nullable=' || is_nullable, 'default=' || coalesce(column_default, '-'))
FROM information_schema.columns WHERE table_schema = 'noetl'
UNION ALL
SELECT 'constraint', conrelid::regclass::text || ' ' || conname, pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'noetl'::regnamespace
UNION ALL
SELECT 'index', indexname, indexdef FROM pg_indexes WHERE schemaname = 'noetl'
UNION ALL
SELECT 'sequence', sequencename, concat_ws(' ', data_type, start_value, increment_by, cycle)
FROM pg_sequences WHERE schemaname = 'noetl'
UNION ALL
SELECT 'function', p.proname, pg_get_functiondef(p.oid) FROM pg_proc AS p
WHERE p.pronamespace = 'noetl'::regnamespace
UNION ALL
SELECT 'trigger', t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger AS t
JOIN pg_class AS c ON c.oid = t.tgrelid WHERE c.relnamespace = 'noetl'::regnamespace AND NOT t.tgisinternal
ORDER BY 1, 2, 3
"""


async def dump(url: str) -> list[tuple[str, str, str]]:
    async with await db.connect(url) as conn:
        return await (await conn.execute(SCHEMA_DUMP)).fetchall()


async def drop_schema(url: str) -> None:
    async with await db.connect(url) as conn:
        await conn.execute("DROP SCHEMA IF EXISTS noetl CASCADE")


async def test_fresh_database_gets_every_migration_once(pg_database: str) -> None:
    await drop_schema(pg_database)
    before = await migrate.status(pg_database)
    assert before["current"] == 0
    assert [p["version"] for p in before["pending"]] == [m.version for m in migrate.available()]

    applied = await migrate.apply(pg_database)
    assert applied == [m.version for m in migrate.available()] and applied[0] == 1
    assert await migrate.apply(pg_database) == []  # a second run changes nothing

    after = await migrate.status(pg_database)
    assert after["current"] == after["latest"] == applied[-1]
    assert after["pending"] == []
    assert [a["version"] for a in after["applied"]] == applied


async def test_concurrent_runs_apply_each_migration_once(pg_database: str) -> None:
    await drop_schema(pg_database)
    first, second = await asyncio.gather(migrate.apply(pg_database), migrate.apply(pg_database))
    assert sorted([first, second]) == [[], [m.version for m in migrate.available()]]


async def test_migration_chain_produces_schema_sql(pg_database: str) -> None:
    await drop_schema(pg_database)
    await migrate.apply(pg_database)
    migrated = await dump(pg_database)

    await drop_schema(pg_database)
    async with await db.connect(pg_database) as conn:
        await conn.execute(migrate.SCHEMA_FILE.read_text())
    declared = await dump(pg_database)

    assert any(kind == "index" and name == "command_claim_idx" for kind, name, _ in migrated)
    assert declared == migrated


async def test_database_newer_than_the_code_is_refused(pg_database: str) -> None:
    await drop_schema(pg_database)
    await migrate.apply(pg_database)
    async with await db.connect(pg_database) as conn:
        await conn.execute("INSERT INTO noetl.schema_migrations (version, name) VALUES (9999, 'future')")
    with pytest.raises(StoreError, match="newer than this NoETL knows"):
        await migrate.apply(pg_database)
