"""Credential encryption: AES-256-GCM envelope encryption under one key-encryption key (KEK).

Each record gets a fresh random 256-bit data key; the data key encrypts the record and the KEK
encrypts (wraps) the data key. Layout of a sealed record, version 1::

    0x01 | wrap nonce (12) | wrapped data key (32 + 16 tag) | data nonce (12) | ciphertext + tag (16)

The version byte and the caller's ``associated`` bytes (the credential name) are authenticated
with both layers, so a record cannot be altered, truncated, or moved to another name unnoticed.
The KEK comes from settings (``NOETL_ENCRYPTION_KEY``, base64 of 32 bytes) or, for the embedded
default, from a key file created with mode 0600 next to the embedded database.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from noetl.errors import CredentialError

VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
WRAPPED_KEY_BYTES = KEY_BYTES + TAG_BYTES
HEADER_BYTES = 1 + NONCE_BYTES + WRAPPED_KEY_BYTES + NONCE_BYTES


class Cipher:
    """Seals and opens credential data with a 32-byte key-encryption key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise CredentialError(f"the encryption key must be {KEY_BYTES} bytes, got {len(key)}")
        self._kek = AESGCM(key)

    @classmethod
    def from_settings(cls, key_b64: str | None, key_file: Path | None) -> Cipher:
        """The cipher for ``NOETL_ENCRYPTION_KEY`` (base64) when given, else for ``key_file``
        (created on first use)."""
        if key_b64:
            return cls(decode_key(key_b64, "NOETL_ENCRYPTION_KEY"))
        if key_file is not None:
            return cls(load_or_create_key_file(key_file))
        raise CredentialError("no encryption key: set NOETL_ENCRYPTION_KEY (base64 of 32 random bytes)")

    def encrypt(self, plain: bytes, associated: bytes = b"") -> bytes:
        """Seal ``plain``; the same ``associated`` bytes must be given to :meth:`decrypt`."""
        data_key = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
        header = bytes([VERSION])
        wrap_nonce, data_nonce = secrets.token_bytes(NONCE_BYTES), secrets.token_bytes(NONCE_BYTES)
        wrapped = self._kek.encrypt(wrap_nonce, data_key, header + associated)
        sealed = AESGCM(data_key).encrypt(data_nonce, plain, header + associated)
        return header + wrap_nonce + wrapped + data_nonce + sealed

    def decrypt(self, sealed: bytes, associated: bytes = b"") -> bytes:
        """Open a record sealed by :meth:`encrypt`; CredentialError if it was altered or the key differs."""
        if len(sealed) < HEADER_BYTES + TAG_BYTES or sealed[0] != VERSION:
            version = sealed[0] if sealed else None
            raise CredentialError(f"credential data has an unknown format (version byte {version})")
        header = sealed[:1]
        wrap_nonce = sealed[1 : 1 + NONCE_BYTES]
        wrapped = sealed[1 + NONCE_BYTES : 1 + NONCE_BYTES + WRAPPED_KEY_BYTES]
        data_nonce = sealed[1 + NONCE_BYTES + WRAPPED_KEY_BYTES : HEADER_BYTES]
        try:
            data_key = self._kek.decrypt(wrap_nonce, wrapped, header + associated)
            return AESGCM(data_key).decrypt(data_nonce, sealed[HEADER_BYTES:], header + associated)
        except InvalidTag:
            raise CredentialError(
                "credential data failed authentication: it was altered, or was encrypted with another key"
            ) from None


def decode_key(text: str, source: str) -> bytes:
    """The 32 key bytes of base64 ``text``; ``source`` names where it came from for the message."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise CredentialError(f"{source} is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise CredentialError(f"{source} must decode to {KEY_BYTES} bytes, got {len(key)}")
    return key


def new_key() -> str:
    """A fresh key as base64 text (what NOETL_ENCRYPTION_KEY and key files hold)."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def load_or_create_key_file(path: Path) -> bytes:
    """The key in ``path`` (base64 text); creates it with a fresh key and mode 0600 if missing.

    Creation is atomic (write a private temporary file, then hard-link it into place), so processes
    starting together agree on one key and nobody reads a half-written file.
    """
    if not path.exists():
        create_key_file(path)
    return decode_key(path.read_text(encoding="ascii"), f"key file {path}")


def create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(new_key() + "\n")
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):  # another process created it first: use theirs
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
