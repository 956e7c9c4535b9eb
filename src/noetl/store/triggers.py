"""Webhook triggers: a name, the playbook path it starts, and its HMAC secret (stored encrypted
with the credential cipher, bound to the trigger's name)."""

from __future__ import annotations

import builtins
from typing import Any

from psycopg.rows import dict_row

from noetl.store import queries
from noetl.store.crypto import Cipher
from noetl.store.db import Connection
from noetl.store.errors import wrap

Q = queries.load("triggers")


def _associated(name: str) -> bytes:
    return f"trigger:{name}".encode()


@wrap
async def put(conn: Connection, name: str, path: str, secret: str, *, cipher: Cipher) -> None:
    sealed = cipher.encrypt(secret.encode("utf-8"), _associated(name))
    await conn.execute(Q["put"], {"name": name, "path": path, "secret": sealed})


@wrap
async def get(conn: Connection, name: str, *, cipher: Cipher) -> dict[str, Any] | None:
    """The trigger with its decrypted ``secret``; None if there is no such trigger."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["get"], {"name": name})
        row = await cur.fetchone()
    if row is None:
        return None
    sealed = row.pop("secret_encrypted")
    return {**row, "secret": cipher.decrypt(bytes(sealed), _associated(name)).decode("utf-8")}


@wrap
async def list(conn: Connection) -> builtins.list[dict[str, Any]]:
    """Every trigger, without secrets."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["list"])
        return await cur.fetchall()


@wrap
async def delete(conn: Connection, name: str) -> bool:
    cur = await conn.execute(Q["delete"], {"name": name})
    return cur.rowcount == 1


@wrap
async def fired(conn: Connection, name: str) -> None:
    await conn.execute(Q["fired"], {"name": name})
