"""Credential encryption: AES-256-GCM envelope encryption under key-encryption keys (KEKs).

Each record gets a fresh random 256-bit data key; the data key encrypts the record and a KEK
encrypts (wraps) the data key. Layout of a sealed record, version 2::

    0x02 | key id (8) | wrap nonce (12) | wrapped data key (32 + 16 tag) | data nonce (12) | ciphertext + tag

The key id (the first 8 bytes of SHA-256 of the KEK) says which KEK wrapped the data key, so a
cipher holding the new key and the previous ones reads every record while a rotation is under way
(:meth:`Cipher.rewrap` moves one record to the newest key by re-wrapping its data key only).
The version byte and the caller's ``associated`` bytes (the credential name) are authenticated by
both layers, the key id by the wrapping layer, so a record cannot be altered, truncated or moved to
another name unnoticed. Version 1 records (no key id) are still read, trying every known key.

Keys come from settings (``NOETL_ENCRYPTION_KEY``, base64 of 32 bytes, plus
``NOETL_ENCRYPTION_PREVIOUS_KEYS``) or from a key file: base64 keys one per line, the first the
current one, the others previous ones. The embedded default creates that file with mode 0600 beside
its data. A cipher built on a key file reads the file again when it meets a key id it does not
know, so a rotation done by ``noetl credential rotate-key`` reaches running processes without a
restart.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from noetl.errors import CredentialError

VERSION = 2
KEY_BYTES = 32
KEY_ID_BYTES = 8
NONCE_BYTES = 12
TAG_BYTES = 16
WRAPPED_KEY_BYTES = KEY_BYTES + TAG_BYTES
V1_HEADER_BYTES = 1 + NONCE_BYTES + WRAPPED_KEY_BYTES + NONCE_BYTES
V2_HEADER_BYTES = 1 + KEY_ID_BYTES + V1_HEADER_BYTES - 1

KeySource = Callable[[], list[bytes]]


def key_id(key: bytes) -> bytes:
    """The id a sealed record carries for the KEK ``key`` (not secret: a hash prefix)."""
    return hashlib.sha256(b"noetl-kek" + key).digest()[:KEY_ID_BYTES]


class Cipher:
    """Seals with the current KEK, opens with any known one (current first, then previous ones)."""

    def __init__(
        self, key: bytes, previous: Sequence[bytes] = (), *, reload: KeySource | None = None
    ) -> None:
        self._reload = reload
        self._set_keys([key, *previous])

    def _set_keys(self, keys: Sequence[bytes]) -> None:
        for key in keys:
            if len(key) != KEY_BYTES:
                raise CredentialError(f"an encryption key must be {KEY_BYTES} bytes, got {len(key)}")
        self._current = key_id(keys[0])
        self._keks = {key_id(key): AESGCM(key) for key in reversed(keys)}

    @property
    def key_id(self) -> str:
        """The current KEK's id as hex (shown by ``rotate-key``; not secret)."""
        return self._current.hex()

    @classmethod
    def from_settings(
        cls, key_b64: str | None, key_file: Path | None, previous_b64: str | None = None
    ) -> Cipher:
        """The cipher for ``NOETL_ENCRYPTION_KEY`` (base64) when given, else for ``key_file`` (created
        on first use). ``previous_b64``: older keys, comma or whitespace separated."""
        previous = [decode_key(text, "NOETL_ENCRYPTION_PREVIOUS_KEYS") for text in split_keys(previous_b64)]
        if key_b64:
            return cls(decode_key(key_b64, "NOETL_ENCRYPTION_KEY"), previous)
        if key_file is not None:
            keys = load_or_create_key_file(key_file)

            def reload() -> list[bytes]:
                return [*read_key_file(key_file), *previous]

            return cls(keys[0], [*keys[1:], *previous], reload=reload)
        raise CredentialError("no encryption key: set NOETL_ENCRYPTION_KEY (base64 of 32 random bytes)")

    def encrypt(self, plain: bytes, associated: bytes = b"") -> bytes:
        """Seal ``plain``; the same ``associated`` bytes must be given to :meth:`decrypt`."""
        data_key = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
        data_nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = AESGCM(data_key).encrypt(data_nonce, plain, bytes([VERSION]) + associated)
        return self._wrap(data_key, associated) + data_nonce + sealed

    def _wrap(self, data_key: bytes, associated: bytes) -> bytes:
        header = bytes([VERSION]) + self._current
        wrap_nonce = secrets.token_bytes(NONCE_BYTES)
        wrapped = self._keks[self._current].encrypt(wrap_nonce, data_key, header + associated)
        return header + wrap_nonce + wrapped

    def decrypt(self, sealed: bytes, associated: bytes = b"") -> bytes:
        """Open a sealed record; CredentialError if it was altered or no known key wrapped it."""
        if sealed[:1] == b"\x01" and len(sealed) >= V1_HEADER_BYTES + TAG_BYTES:
            return self._decrypt_v1(sealed, associated)
        data_key = self._unwrap(sealed, associated)
        data_nonce = sealed[V2_HEADER_BYTES - NONCE_BYTES : V2_HEADER_BYTES]
        try:
            return AESGCM(data_key).decrypt(data_nonce, sealed[V2_HEADER_BYTES:], sealed[:1] + associated)
        except InvalidTag:
            raise _tampered() from None

    def rewrap(self, sealed: bytes, associated: bytes = b"") -> bytes:
        """The record re-wrapped under the current key (the data part is kept as it is); a version 1
        record is sealed again whole. Raises like :meth:`decrypt` when the record does not open."""
        if sealed[:1] == b"\x01":
            return self.encrypt(self.decrypt(sealed, associated), associated)
        if sealed[1 : 1 + KEY_ID_BYTES] == self._current:
            self.decrypt(sealed, associated)  # still prove it is intact
            return sealed
        data_key = self._unwrap(sealed, associated)
        rest = sealed[V2_HEADER_BYTES - NONCE_BYTES :]
        try:  # check the data layer too before rewriting the record
            AESGCM(data_key).decrypt(rest[:NONCE_BYTES], rest[NONCE_BYTES:], sealed[:1] + associated)
        except InvalidTag:
            raise _tampered() from None
        return self._wrap(data_key, associated) + rest

    def wrapped_by_current(self, sealed: bytes) -> bool:
        return sealed[:1] == bytes([VERSION]) and sealed[1 : 1 + KEY_ID_BYTES] == self._current

    def _unwrap(self, sealed: bytes, associated: bytes) -> bytes:
        if len(sealed) < V2_HEADER_BYTES + TAG_BYTES or sealed[0] != VERSION:
            version = sealed[0] if sealed else None
            raise CredentialError(f"credential data has an unknown format (version byte {version})")
        kid = sealed[1 : 1 + KEY_ID_BYTES]
        kek = self._kek(kid)
        header = sealed[: 1 + KEY_ID_BYTES]
        wrap_nonce = sealed[1 + KEY_ID_BYTES : 1 + KEY_ID_BYTES + NONCE_BYTES]
        wrapped = sealed[1 + KEY_ID_BYTES + NONCE_BYTES : 1 + KEY_ID_BYTES + NONCE_BYTES + WRAPPED_KEY_BYTES]
        try:
            return kek.decrypt(wrap_nonce, wrapped, header + associated)
        except InvalidTag:
            raise _tampered() from None

    def _kek(self, kid: bytes) -> AESGCM:
        kek = self._keks.get(kid)
        if kek is None and self._reload is not None:
            self._set_keys(self._reload())
            kek = self._keks.get(kid)
        if kek is None:
            raise CredentialError(
                f"credential data was encrypted with a key this process does not have (key id "
                f"{kid.hex()}); configure that key in NOETL_ENCRYPTION_PREVIOUS_KEYS, or finish "
                "`noetl credential rotate-key`"
            )
        return kek

    def _decrypt_v1(self, sealed: bytes, associated: bytes) -> bytes:
        header = sealed[:1]
        wrap_nonce = sealed[1 : 1 + NONCE_BYTES]
        wrapped = sealed[1 + NONCE_BYTES : 1 + NONCE_BYTES + WRAPPED_KEY_BYTES]
        data_nonce = sealed[1 + NONCE_BYTES + WRAPPED_KEY_BYTES : V1_HEADER_BYTES]
        for kek in self._keks.values():
            try:
                data_key = kek.decrypt(wrap_nonce, wrapped, header + associated)
            except InvalidTag:
                continue
            try:
                return AESGCM(data_key).decrypt(data_nonce, sealed[V1_HEADER_BYTES:], header + associated)
            except InvalidTag:
                break
        raise _tampered()


def _tampered() -> CredentialError:
    return CredentialError(
        "credential data failed authentication: it was altered, or was encrypted with another key"
    )


def decode_key(text: str, source: str) -> bytes:
    """The 32 key bytes of base64 ``text``; ``source`` names where it came from for the message."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise CredentialError(f"{source} is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise CredentialError(f"{source} must decode to {KEY_BYTES} bytes, got {len(key)}")
    return key


def split_keys(text: str | None) -> list[str]:
    return [part for part in (text or "").replace(",", " ").split() if part]


def new_key() -> str:
    """A fresh key as base64 text (what NOETL_ENCRYPTION_KEY and key files hold)."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def read_key_file(path: Path) -> list[bytes]:
    """The keys in ``path``: base64 text one per line, current first."""
    lines = split_keys(path.read_text(encoding="ascii"))
    if not lines:
        raise CredentialError(f"key file {path} holds no key")
    return [decode_key(line, f"key file {path}") for line in lines]


def load_or_create_key_file(path: Path) -> list[bytes]:
    """The keys in ``path``; creates it with a fresh key and mode 0600 if missing.

    Creation is atomic (write a private temporary file, then hard-link it into place), so processes
    starting together agree on one key and nobody reads a half-written file.
    """
    if not path.exists():
        create_key_file(path)
    return read_key_file(path)


def create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = _private_file(path, new_key() + "\n")
    try:
        with contextlib.suppress(FileExistsError):  # another process created it first: use theirs
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_key_file(path: Path, keys: Sequence[str]) -> None:
    """Replace ``path`` atomically with ``keys`` (base64, current first), mode 0600."""
    temporary = _private_file(path, "".join(key + "\n" for key in keys))
    os.replace(temporary, path)


def _private_file(path: Path, text: str) -> Path:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    return temporary
