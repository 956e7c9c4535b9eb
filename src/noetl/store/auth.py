"""API keys and the audit trail: what the gateway authenticates with and what it writes down.

An API key is ``noetl_`` followed by 43 random URL-safe characters. Only its SHA-256 is stored (a
key is as random as a data key, so a fast hash is as safe as a slow one and keeps every request
cheap); :func:`create_key` returns the key once and it cannot be read back. A key carries a role
(``admin``, ``operator``, ``developer``, ``viewer``) and catalog path patterns.

The audit trail records who did what to which resource and whether it was allowed: the gateway's
access decisions and every read of credential data. It never holds a secret value.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from psycopg.rows import dict_row, tuple_row

from noetl.errors import UsageError
from noetl.store import jsonb, queries
from noetl.store.db import Connection
from noetl.store.errors import wrap
from noetl.store.ids import new_id

Q = queries.load("auth")

ROLES: Final = ("admin", "operator", "developer", "viewer")
KEY_PREFIX: Final = "noetl_"


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


@wrap
async def create_key(
    conn: Connection,
    name: str,
    role: str,
    paths: Sequence[str] = ("*",),
    expires_at: datetime | None = None,
) -> tuple[str, dict[str, Any]]:
    """A new API key: ``(key, record)``. The key is returned here only; it is stored hashed."""
    if role not in ROLES:
        raise UsageError(f"unknown role '{role}'; roles: {', '.join(ROLES)}", field="role")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    params = {
        "key_id": new_id(),
        "name": name,
        "prefix": key[: len(KEY_PREFIX) + 6],
        "secret_hash": hash_key(key),
        "role": role,
        "paths": builtins.list(paths) or ["*"],
        "expires_at": expires_at,
    }
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["create_key"], params)
        row = await cur.fetchone()
    assert row is not None, "INSERT ... RETURNING gave no row"
    return key, key_record(row)


@wrap
async def find_key(conn: Connection, key: str) -> dict[str, Any] | None:
    """The record of a usable (not revoked, not expired) key, or None."""
    if not key.startswith(KEY_PREFIX):
        return None
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["find_key"], {"secret_hash": hash_key(key)})
        row = await cur.fetchone()
    return key_record(row) if row is not None else None


@wrap
async def list_keys(conn: Connection) -> builtins.list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["list_keys"])
        return [key_record(row) for row in await cur.fetchall()]


@wrap
async def revoke_key(conn: Connection, name: str) -> bool:
    """Revoke the key ``name``; False if there is no such live key."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(Q["revoke_key"], {"name": name})
        return cur.rowcount == 1


@wrap
async def record(
    conn: Connection,
    actor: str,
    action: str,
    decision: str,
    resource: str | None = None,
    execution_id: int | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Append one audit event (``decision``: allowed, denied, read, failed ...)."""
    params = {
        "audit_id": new_id(),
        "actor": actor,
        "action": action,
        "resource": resource,
        "execution_id": execution_id,
        "decision": decision,
        "detail": jsonb.param(dict(detail or {})),
    }
    async with conn.cursor() as cur:
        await cur.execute(Q["record"], params)


@wrap
async def trail(
    conn: Connection, action: str | None = None, execution_id: int | None = None, limit: int = 100
) -> builtins.list[dict[str, Any]]:
    """The newest audit events first, optionally of one action or one execution."""
    params = {"action": action, "execution_id": execution_id, "limit": limit}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["trail"], params)
        rows = await cur.fetchall()
    return [
        {
            **row,
            "audit_id": str(row["audit_id"]),
            "at": row["at"].isoformat(),
            "execution_id": str(row["execution_id"]) if row["execution_id"] is not None else None,
        }
        for row in rows
    ]


def key_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """The public part of a key row (never the hash)."""
    return {
        "key_id": str(row["key_id"]),
        "name": row["name"],
        "prefix": row["prefix"],
        "role": row["role"],
        "paths": row["paths"],
        "created_at": _iso(row["created_at"]),
        "expires_at": _iso(row["expires_at"]),
        "revoked_at": _iso(row["revoked_at"]),
        "last_used_at": _iso(row["last_used_at"]),
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
