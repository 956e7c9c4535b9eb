"""Credential endpoints: create or replace, list, read, delete (REFERENCE §7, §9).

Secret ``data`` goes in encrypted and comes back only from ``GET /api/credentials/{name}`` with
``include_data=true`` (ARCHITECTURE invariant 5); every other answer carries the record without it.
Each such read is written to the audit trail (who asked, which credential; never the value).
``allow_paths`` limits the credential to playbooks whose catalog path matches one of its patterns.

The key is ``NOETL_ENCRYPTION_KEY`` (base64 of 32 bytes), else the key file named by
``NOETL_ENCRYPTION_KEY_FILE``, else ``credentials.key`` in the data directory, created with mode
0600 on first use - only for the embedded setup or when a data directory was configured; a server
with its own database URL and none of these refuses to start rather than invent a key nobody
backs up.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from noetl import flags
from noetl.errors import CredentialError, UsageError
from noetl.server.auth import principal
from noetl.server.context import Server
from noetl.server.problems import NotFound
from noetl.server.settings import ServerSettings
from noetl.store import auth, credentials
from noetl.store.crypto import Cipher

log = logging.getLogger("noetl.server")
router = APIRouter(prefix="/api/credentials", tags=["credentials"])

KEY_FILE_NAME = "credentials.key"


class CredentialRequest(BaseModel):
    name: str = Field(min_length=1, max_length=256)
    type: str = Field(min_length=1)
    data: dict[str, Any]
    meta: dict[str, Any] | None = None
    tags: list[str] | None = None
    description: str | None = None
    allow_paths: list[str] | None = None


@router.post("")
async def put(body: CredentialRequest, server: Server) -> dict[str, Any]:
    async with server.pool.connection() as conn, conn.transaction():
        saved = await credentials.put(
            conn,
            body.name,
            body.type,
            body.data,
            meta=body.meta,
            description=body.description,
            tags=body.tags,
            cipher=server.cipher,
            allow_paths=body.allow_paths,
        )
    return {"status": "saved", **saved}


@router.get("")
async def list_credentials(server: Server, type: str | None = None, q: str | None = None) -> dict[str, Any]:
    async with server.pool.connection() as conn:
        found = await credentials.list(conn, type=type, q=q)
    return {"credentials": found}


@router.get("/{name}")
async def get(name: str, server: Server, request: Request, include_data: str = "false") -> dict[str, Any]:
    try:  # the gateway's parser: both read the same value the same way (noetl.flags)
        wants_data = flags.parse(include_data, "include_data")
    except ValueError as exc:
        raise UsageError(str(exc), field="include_data") from None
    async with server.pool.connection() as conn:
        try:
            found = await credentials.get(conn, name, include_data=wants_data, cipher=server.cipher)
        except CredentialError as exc:
            who = principal(request)
            await auth.record(conn, who, "credential.read", "failed", name, detail={"error": exc.message})
            raise
        if wants_data and found is not None:
            await auth.record(
                conn, principal(request), "credential.read", "read", name, detail={"via": "api"}
            )
    if found is None:
        raise NotFound(f"credential '{name}' not found")
    return found


@router.delete("/{name}")
async def delete(name: str, server: Server) -> dict[str, Any]:
    async with server.pool.connection() as conn:
        deleted = await credentials.delete(conn, name)
    if not deleted:
        raise NotFound(f"credential '{name}' not found")
    return {"status": "deleted", "name": name}


def cipher(settings: ServerSettings, *, embedded: bool = False) -> Cipher:
    """The cipher for the configured key (see the module docstring for the order)."""
    if settings.encryption_key:
        return Cipher.from_settings(settings.encryption_key, None, settings.previous_keys)
    if settings.encryption_key_file is None and settings.data_dir is None and not embedded:
        raise CredentialError(
            "refusing to start: no credential encryption key. Set NOETL_ENCRYPTION_KEY (base64 of 32 "
            "random bytes, e.g. from `noetl credential new-key`) or NOETL_ENCRYPTION_KEY_FILE; only the "
            "embedded setup creates a key by itself"
        )
    path = key_file(settings)
    if not path.exists():
        log.warning(
            "created a new credential encryption key in %s (mode 0600): back it up, stored credentials "
            "cannot be read without it; workers on other machines need it as NOETL_ENCRYPTION_KEY",
            path,
        )
    else:
        log.info("credentials are encrypted with the key in %s (workers need the same key)", path)
    return Cipher.from_settings(None, path, settings.previous_keys)


def key_file(settings: ServerSettings) -> Path:
    if settings.encryption_key_file is not None:
        return settings.encryption_key_file
    return data_dir(settings) / KEY_FILE_NAME


def data_dir(settings: ServerSettings) -> Path:
    """The NoETL data directory: the settings', else the parent of the embedded database's."""
    if settings.data_dir is not None:
        return settings.data_dir
    from noetl.store import embedded

    return embedded.default_dir().parent
