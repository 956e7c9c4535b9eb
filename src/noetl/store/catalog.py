"""The catalog: registered playbooks, versioned per path (1, 2, 3...), content kept verbatim."""

from __future__ import annotations

import builtins
from typing import Any

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from noetl.errors import UsageError
from noetl.store import ids, queries
from noetl.store.db import Connection
from noetl.store.errors import wrap
from noetl.store.ports import CatalogEntry

Q = queries.load("catalog")


@wrap
async def register(
    conn: Connection, path: str, content: str, kind: str = "Playbook", meta: dict[str, Any] | None = None
) -> CatalogEntry:
    """Store ``content`` as the next version of ``path`` (version 1 for a new path)."""
    params = {
        "catalog_id": ids.new_id(),
        "path": path,
        "kind": kind,
        "content": content,
        "meta": Jsonb(meta or {}),
    }
    # A savepoint when the caller has a transaction open; the path lock lasts until it commits.
    async with conn.transaction(), conn.cursor(row_factory=class_row(CatalogEntry)) as cur:
        await cur.execute(Q["lock_path"], {"path": path})
        await cur.execute(Q["insert"], params)
        entry = await cur.fetchone()
    assert entry is not None, "INSERT ... RETURNING gave no row"
    return entry


@wrap
async def get(
    conn: Connection, catalog_id: int | None = None, path: str | None = None, version: int | None = None
) -> CatalogEntry | None:
    """The entry with ``catalog_id``, or the given (default: latest) ``version`` of ``path``."""
    params: dict[str, object]
    if catalog_id is not None:
        query, params = Q["by_id"], {"catalog_id": catalog_id}
    elif path is not None and version is not None:
        query, params = Q["by_path_version"], {"path": path, "version": version}
    elif path is not None:
        query, params = Q["latest"], {"path": path}
    else:
        raise UsageError("catalog lookup needs a catalog_id or a path")
    async with conn.cursor(row_factory=class_row(CatalogEntry)) as cur:
        await cur.execute(query, params)
        return await cur.fetchone()


@wrap
async def list(
    conn: Connection, kind: str | None = None, path: str | None = None
) -> builtins.list[CatalogEntry]:
    """Every entry (every version), optionally of one kind or one path, ordered by path and version."""
    async with conn.cursor(row_factory=class_row(CatalogEntry)) as cur:
        await cur.execute(Q["list"], {"kind": kind, "path": path})
        return await cur.fetchall()
