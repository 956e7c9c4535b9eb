"""Schema migrations: numbered, forward-only SQL files applied once each, in order.

``migrations/NNNN_name.sql`` holds plain SQL; ``noetl.schema_migrations`` records what ran. Each
migration runs in its own transaction together with its bookkeeping row, under a session advisory
lock, so servers starting side by side apply each migration exactly once. ``schema.sql`` shows the
result as a whole; a contract test proves the chain produces it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, LiteralString

from noetl.store import db, queries
from noetl.store.errors import StoreError, translated

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
SCHEMA_FILE = Path(__file__).with_name("schema.sql")
FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
Q = queries.load("migrate")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    path: Path

    def sql(self) -> LiteralString:
        # Shipped inside the package: as trusted as a literal in the code.
        return self.path.read_text(encoding="utf-8")


def available() -> list[Migration]:
    """The migrations shipped with this version of NoETL, checked to be numbered 1, 2, 3..."""
    found = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        match = FILE_NAME.match(path.name)
        if match is None:
            raise StoreError(f"migration file {path.name} is not named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], path))
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise StoreError(f"migration {migration.path.name}: expected number {expected:04d}")
    return found


async def apply(url: str) -> list[int]:
    """Apply the pending migrations; returns their versions (empty when the schema is current)."""
    migrations = available()
    async with await db.connect(url) as conn:
        with translated("migrating the schema"):
            await conn.execute(Q["lock"])
            await conn.execute(Q["bootstrap"])
            done = {row[0] for row in await (await conn.execute(Q["applied"])).fetchall()}
            check_not_newer(done, migrations)
            applied = []
            for migration in migrations:
                if migration.version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql())
                    await conn.execute(Q["record"], {"version": migration.version, "name": migration.name})
                applied.append(migration.version)
            await conn.execute(Q["unlock"])
    return applied


def check_not_newer(done: set[int], migrations: list[Migration]) -> None:
    latest = migrations[-1].version if migrations else 0
    unknown = sorted(v for v in done if v > latest)
    if unknown:
        raise StoreError(
            f"the database schema is at version {unknown[-1]}, newer than this NoETL knows ({latest}); "
            "upgrade NoETL"
        )


async def status(url: str) -> dict[str, Any]:
    """``{current, latest, applied: [{version, name, applied_at}], pending: [{version, name}]}``."""
    migrations = available()
    async with await db.connect(url) as conn:
        with translated("reading the schema version"):
            exists = (await (await conn.execute(Q["has_table"])).fetchone() or (False,))[0]
            rows = await (await conn.execute(Q["applied"])).fetchall() if exists else []
    done = {row[0] for row in rows}
    return {
        "current": max(done, default=0),
        "latest": migrations[-1].version if migrations else 0,
        "applied": [{"version": v, "name": n, "applied_at": at.isoformat()} for v, n, at in rows],
        "pending": [{"version": m.version, "name": m.name} for m in migrations if m.version not in done],
    }
