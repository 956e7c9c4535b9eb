"""Credentials for tasks, from the encrypted ``credential`` table (the runtime's CredentialStore).

The task runner asks for a credential by name when a task says ``auth: <name>`` or a keychain
entry points at one; :class:`StoreCredentials` reads the row, decrypts it with the key from the
worker's settings and returns ``{"type", "data"}``. Each command resolves a credential once (the
runner caches it and masks its secrets in everything it reports); the worker does not cache across
commands, so an updated credential takes effect at the next command.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from noetl.errors import CredentialError
from noetl.runtime.credentials import Credential
from noetl.worker.database import Database
from noetl.worker.settings import WorkerSettings

if TYPE_CHECKING:
    from noetl.store.crypto import Cipher


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


class StoreCredentials:
    """``await store.get(name)`` -> ``{"type", "data"}`` decrypted from the credential table."""

    def __init__(self, database: Database, cipher: Cipher | None) -> None:
        self._database = database
        self._cipher = cipher

    async def get(self, name: str) -> Credential:
        from noetl.store import credentials

        if self._cipher is None:
            raise CredentialError(
                f"credential '{name}' is needed but the worker has no encryption key; "
                "set NOETL_ENCRYPTION_KEY or NOETL_ENCRYPTION_KEY_FILE"
            )
        cipher = self._cipher

        row = await self._database.run(
            f"reading credential '{name}'",
            lambda conn: credentials.get(conn, name, include_data=True, cipher=cipher),
        )
        if row is None:
            raise CredentialError(f"credential '{name}' not found in the credential store")
        data = row.get("data")
        if not isinstance(data, dict):
            raise CredentialError(f"credential '{name}' has no data (a map) in the credential store")
        return {"type": str(row.get("type") or "generic"), "data": data}
