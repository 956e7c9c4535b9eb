"""Credentials: named secrets stored encrypted (``crypto.Cipher``), readable only on request.

Records come back as JSON-ready dicts ``{name, type, meta, description, tags, created_at,
updated_at}`` (timestamps as ISO 8601 text); ``data`` is added only by ``get(include_data=True)``,
the one path that decrypts. The credential name is bound into the ciphertext, so sealed data
copied under another name does not open.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row, tuple_row

from noetl.errors import CredentialError
from noetl.store import jsonb, queries
from noetl.store.crypto import Cipher
from noetl.store.db import Connection
from noetl.store.errors import wrap

Q = queries.load("credentials")


@wrap
async def put(
    conn: Connection,
    name: str,
    type: str,
    data: dict[str, Any],
    meta: dict[str, Any] | None = None,
    description: str | None = None,
    tags: Sequence[str] | None = None,
    *,
    cipher: Cipher,
) -> dict[str, Any]:
    """Create or replace the credential ``name``; returns its record (without data)."""
    sealed = cipher.encrypt(jsonb.dumps(data).encode("utf-8"), name.encode("utf-8"))
    params = {
        "name": name,
        "type": type,
        "data_encrypted": sealed,
        "meta": jsonb.param(meta or {}),
        "description": description,
        "tags": builtins.list(tags or ()),
    }
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["put"], params)
        row = await cur.fetchone()
    assert row is not None, "INSERT ... RETURNING gave no row"
    return record(row)


@wrap
async def get(
    conn: Connection, name: str, include_data: bool = False, *, cipher: Cipher | None = None
) -> dict[str, Any] | None:
    """The credential ``name`` (None if absent); with ``include_data`` its decrypted ``data`` too."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["get"], {"name": name})
        row = await cur.fetchone()
    if row is None:
        return None
    found = record(row)
    if include_data:
        if cipher is None:
            raise CredentialError(f"credential '{name}': reading its data needs the encryption key")
        found["data"] = json.loads(cipher.decrypt(row["data_encrypted"], name.encode("utf-8")))
    return found


@wrap
async def list(
    conn: Connection, type: str | None = None, q: str | None = None
) -> builtins.list[dict[str, Any]]:
    """Credential records (never data) by name, optionally of one type or matching text ``q``."""
    pattern = f"%{escape_like(q)}%" if q else None
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["list"], {"type": type, "pattern": pattern})
        return [record(row) for row in await cur.fetchall()]


@wrap
async def delete(conn: Connection, name: str) -> bool:
    """Remove the credential; False if there was none."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["delete"], {"name": name})
        return cur.rowcount == 1


def record(row: dict[str, Any]) -> dict[str, Any]:
    """The public, JSON-ready part of a credential row."""
    return {
        "name": row["name"],
        "type": row["type"],
        "meta": row["meta"],
        "description": row["description"],
        "tags": row["tags"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def escape_like(text: str) -> str:
    """``text`` with LIKE's wildcards taken literally."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
