"""Credentials for tasks, from the encrypted ``credential`` table (the runtime's CredentialStore).

The task runner asks for a credential by name when a task says ``auth: <name>`` or a keychain
entry points at one; :class:`StoreCredentials` reads the row, checks that the asking playbook is in
the credential's scope (``allow_paths``), decrypts it with the key from the worker's settings and
returns ``{"type", "data"}``. Every attempt is written to the audit trail - who (this worker), which
credential, which execution and step, and whether it was read or refused - never the value. Each
command resolves a credential once (the runner caches it and masks its secrets in everything it
reports); the worker does not cache across commands, so an updated credential takes effect at the
next command.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from noetl.errors import CredentialError
from noetl.runtime.credentials import Credential, Use
from noetl.worker.database import Database
from noetl.worker.settings import WorkerSettings

if TYPE_CHECKING:
    from noetl.store.crypto import Cipher
    from noetl.store.db import Connection


def cipher_from(settings: WorkerSettings) -> Cipher | None:
    """The cipher for the configured key (base64 text, or a key file), else for the key file of an
    embedded server on this machine; None when there is none."""
    from noetl.store.crypto import Cipher

    key_file = Path(settings.encryption_key_file) if settings.encryption_key_file else None
    if not settings.encryption_key_b64 and key_file is None:
        # the embedded default: the key file a server on this machine created beside its data
        from noetl.store.embedded import default_dir

        key_file = default_dir().parent / "credentials.key"
        if not key_file.exists():
            return None
    return Cipher.from_settings(settings.encryption_key_b64, key_file)


def default_actor() -> str:
    return f"worker:{socket.gethostname()}:{os.getpid()}"


class StoreCredentials:
    """``await store.get(name, use)`` -> ``{"type", "data"}`` decrypted from the credential table."""

    def __init__(self, database: Database, cipher: Cipher | None, actor: str | None = None) -> None:
        self._database = database
        self._cipher = cipher
        self._actor = actor or default_actor()

    async def get(self, name: str, use: Use | None = None) -> Credential:
        if self._cipher is None:
            raise CredentialError(
                f"credential '{name}' is needed but the worker has no encryption key; "
                "set NOETL_ENCRYPTION_KEY or NOETL_ENCRYPTION_KEY_FILE"
            )
        cipher, use = self._cipher, use or Use()

        async def read(conn: Connection) -> dict[str, Any] | None:
            from noetl.store import credentials

            found = await credentials.get(conn, name)
            if found is None:
                return None
            try:
                credentials.check_scope(found, use.playbook_path, use.step)
                full = await credentials.get(conn, name, include_data=True, cipher=cipher)
            except CredentialError as exc:
                await self._audit(conn, name, use, "denied", exc.message)
                raise
            await self._audit(conn, name, use, "read")
            return full

        row = await self._database.run(f"reading credential '{name}'", read)
        if row is None:
            raise CredentialError(f"credential '{name}' not found in the credential store")
        data = row.get("data")
        if not isinstance(data, dict):
            raise CredentialError(f"credential '{name}' has no data (a map) in the credential store")
        return {"type": str(row.get("type") or "generic"), "data": data}

    async def _audit(self, conn: Connection, name: str, use: Use, decision: str, error: str = "") -> None:
        from noetl.store import auth

        detail: dict[str, Any] = {"playbook": use.playbook_path, "step": use.step}
        if error:
            detail["error"] = error
        execution = int(use.execution_id) if use.execution_id and use.execution_id.isdigit() else None
        await auth.record(conn, self._actor, "credential.read", decision, name, execution, detail)
