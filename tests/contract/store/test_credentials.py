"""Credentials: envelope encryption, tamper detection, key files, and the credential table."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from noetl.errors import CredentialError
from noetl.store import credentials
from noetl.store.crypto import Cipher, load_or_create_key_file, new_key
from noetl.store.db import Connection

SECRET = "pa55-Word-Zeta"
KEY = bytes(range(32))


@pytest.fixture
def cipher() -> Cipher:
    return Cipher(KEY)


def test_encrypt_round_trips_and_is_randomised(cipher: Cipher) -> None:
    one, two = cipher.encrypt(b"hello", b"pg"), cipher.encrypt(b"hello", b"pg")
    assert one != two and one[0] == 2 and b"hello" not in one
    assert cipher.decrypt(one, b"pg") == cipher.decrypt(two, b"pg") == b"hello"


@pytest.mark.parametrize("position", [0, 5, 30, 70, -1])
def test_any_altered_byte_fails_authentication(cipher: Cipher, position: int) -> None:
    sealed = bytearray(cipher.encrypt(b"secret data", b"pg"))
    sealed[position] ^= 0x01
    with pytest.raises(
        CredentialError, match=r"failed authentication|unknown format|key this process does not have"
    ):
        cipher.decrypt(bytes(sealed), b"pg")


def test_wrong_key_wrong_name_or_truncation_fail(cipher: Cipher) -> None:
    sealed = cipher.encrypt(b"secret data", b"pg")
    with pytest.raises(CredentialError, match="key this process does not have"):
        Cipher(bytes(32)).decrypt(sealed, b"pg")
    with pytest.raises(CredentialError, match="failed authentication"):
        cipher.decrypt(sealed, b"other")
    with pytest.raises(CredentialError, match="failed authentication"):
        cipher.decrypt(sealed[:-1], b"pg")
    with pytest.raises(CredentialError, match="unknown format"):
        cipher.decrypt(sealed[:20], b"pg")


def test_key_from_settings(tmp_path: Path) -> None:
    key_b64 = base64.b64encode(KEY).decode()
    sealed = Cipher(KEY).encrypt(b"x")
    assert Cipher.from_settings(key_b64, tmp_path / "unused.key").decrypt(sealed) == b"x"
    assert not (tmp_path / "unused.key").exists()
    with pytest.raises(CredentialError, match="not valid base64"):
        Cipher.from_settings("not base64!", None)
    with pytest.raises(CredentialError, match="must decode to 32 bytes"):
        Cipher.from_settings(base64.b64encode(b"short").decode(), None)
    with pytest.raises(CredentialError, match="no encryption key"):
        Cipher.from_settings(None, None)
    with pytest.raises(CredentialError, match="must be 32 bytes"):
        Cipher(b"short")


def test_key_file_is_created_private_once_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "deeper" / "encryption.key"
    (key,) = load_or_create_key_file(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key_file(path) == [key]
    assert list(path.parent.iterdir()) == [path]  # no temporary files left behind
    sealed = Cipher.from_settings(None, path).encrypt(b"x")
    assert Cipher(key).decrypt(sealed) == b"x"
    assert len(base64.b64decode(new_key())) == 32


async def test_put_get_list_delete(conn: Connection, cipher: Cipher) -> None:
    data = {"db_host": "h", "db_password": SECRET}
    stored = await credentials.put(
        conn, "pg", "postgres", data, meta={"team": "a"}, description="main db", tags=["prod"], cipher=cipher
    )
    assert stored["name"] == "pg" and "data" not in stored and isinstance(stored["created_at"], str)
    await credentials.put(conn, "api_100%", "http", {"token": "t"}, cipher=cipher)

    plain = await credentials.get(conn, "pg")
    assert plain is not None and "data" not in plain
    assert (plain["type"], plain["meta"], plain["description"], plain["tags"]) == (
        "postgres",
        {"team": "a"},
        "main db",
        ["prod"],
    )
    full = await credentials.get(conn, "pg", include_data=True, cipher=cipher)
    assert full is not None and full["data"] == data
    with pytest.raises(CredentialError, match="needs the encryption key"):
        await credentials.get(conn, "pg", include_data=True)
    assert await credentials.get(conn, "missing", include_data=True, cipher=cipher) is None

    listed = await credentials.list(conn)
    assert [c["name"] for c in listed] == ["api_100%", "pg"]
    assert all("data" not in c for c in listed)
    assert [c["name"] for c in await credentials.list(conn, type="postgres")] == ["pg"]
    assert [c["name"] for c in await credentials.list(conn, q="MAIN")] == ["pg"]
    assert [c["name"] for c in await credentials.list(conn, q="PRO")] == ["pg"]
    assert [c["name"] for c in await credentials.list(conn, q="100%")] == ["api_100%"]
    assert [c["name"] for c in await credentials.list(conn, q="_1")] == ["api_100%"]
    assert await credentials.list(conn, q="p_") == []  # LIKE wildcards are taken literally
    assert await credentials.list(conn, q="0%p") == []

    assert await credentials.delete(conn, "pg")
    assert not await credentials.delete(conn, "pg")
    assert await credentials.get(conn, "pg") is None


async def test_put_replaces_and_the_secret_is_stored_encrypted(conn: Connection, cipher: Cipher) -> None:
    await credentials.put(conn, "pg", "postgres", {"db_password": SECRET}, cipher=cipher)
    await credentials.put(conn, "pg", "postgres", {"db_password": "new-" + SECRET}, tags=["x"], cipher=cipher)
    full = await credentials.get(conn, "pg", include_data=True, cipher=cipher)
    assert full is not None and (full["data"], full["tags"]) == ({"db_password": "new-" + SECRET}, ["x"])
    cur = await conn.execute("SELECT data_encrypted, meta::text FROM noetl.credential")
    rows = await cur.fetchall()
    assert len(rows) == 1
    assert SECRET.encode() not in bytes(rows[0][0]) and SECRET not in rows[0][1]


async def test_tampered_or_moved_records_do_not_open(conn: Connection, cipher: Cipher) -> None:
    await credentials.put(conn, "pg", "postgres", {"db_password": SECRET}, cipher=cipher)
    await conn.execute(
        "UPDATE noetl.credential SET data_encrypted = set_byte(data_encrypted, 79, get_byte(data_encrypted, 79) # 1)"
    )
    with pytest.raises(CredentialError, match="credential data failed authentication"):
        await credentials.get(conn, "pg", include_data=True, cipher=cipher)

    await credentials.put(conn, "pg", "postgres", {"db_password": SECRET}, cipher=cipher)
    await conn.execute("UPDATE noetl.credential SET name = 'stolen' WHERE name = 'pg'")
    with pytest.raises(CredentialError, match="credential data failed authentication"):
        await credentials.get(conn, "stolen", include_data=True, cipher=cipher)
