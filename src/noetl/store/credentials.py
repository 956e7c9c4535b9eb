"""Credentials: named secrets stored encrypted (``crypto.Cipher``), readable only on request.

Records come back as JSON-ready dicts ``{name, type, meta, description, tags, allow_paths,
created_at, updated_at}`` (timestamps as ISO 8601 text); ``data`` is added only by ``get(include_data=True)``,
the one path that decrypts. The credential name is bound into the ciphertext, so sealed data
copied under another name does not open.

``allow_paths`` limits which playbooks may use a credential: catalog path patterns (``fnmatch``,
``finance/*``); empty means any playbook. :func:`check_scope` is the one place that decides.
:func:`rotate` re-wraps every record under the cipher's current key, a batch per transaction, so
readers holding either key keep working while it runs.
"""

from __future__ import annotations

import builtins
import fnmatch
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
    allow_paths: Sequence[str] | None = None,
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
        "allow_paths": builtins.list(allow_paths or ()),
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


@wrap
async def rotate(conn: Connection, cipher: Cipher, batch: int = 100) -> dict[str, int]:
    """Re-wrap every credential under ``cipher``'s current key; ``{rewrapped, unchanged}``.

    A record that does not open (tampered, or sealed with a key the cipher lacks) stops the rotation
    with a CredentialError naming it; the batches committed before stay rotated and a second run
    continues where it is needed (records already under the current key are left alone).
    """
    after, counts = "", {"rewrapped": 0, "unchanged": 0}
    while True:
        async with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
            await cur.execute(Q["sealed_batch"], {"after": after, "limit": batch})
            rows = await cur.fetchall()
            for name, sealed in rows:
                if cipher.wrapped_by_current(bytes(sealed)):
                    counts["unchanged"] += 1
                    continue
                try:
                    resealed = cipher.rewrap(bytes(sealed), name.encode("utf-8"))
                except CredentialError as exc:
                    raise CredentialError(f"credential '{name}': {exc.message}") from None
                await cur.execute(Q["reseal"], {"name": name, "data_encrypted": resealed})
                counts["rewrapped"] += 1
        if len(rows) < batch:
            return counts
        after = rows[-1][0]


def in_scope(allow_paths: Sequence[str], playbook_path: str | None) -> bool:
    """Whether a playbook at ``playbook_path`` may use a credential limited to ``allow_paths``."""
    if not allow_paths:
        return True
    if not playbook_path:
        return False
    return any(fnmatch.fnmatchcase(playbook_path, pattern) for pattern in allow_paths)


def check_scope(found: dict[str, Any], playbook_path: str | None, step: str | None = None) -> None:
    """CredentialError when the credential record ``found`` may not be used by ``playbook_path``."""
    allowed = found.get("allow_paths") or []
    if in_scope(allowed, playbook_path):
        return
    where = f"playbook '{playbook_path}'" if playbook_path else "a playbook without a catalog path"
    at = f" (step '{step}')" if step else ""
    raise CredentialError(
        f"credential '{found['name']}' may be used only by playbooks matching {', '.join(allowed)}; "
        f"{where}{at} is outside its scope"
    )


def record(row: dict[str, Any]) -> dict[str, Any]:
    """The public, JSON-ready part of a credential row."""
    return {
        "name": row["name"],
        "type": row["type"],
        "meta": row["meta"],
        "description": row["description"],
        "tags": row["tags"],
        "allow_paths": row["allow_paths"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def escape_like(text: str) -> str:
    """``text`` with LIKE's wildcards taken literally."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
