"""Keys and tokens: the oauth2 keychain against a token server started here, key rotation with the
CLI while credentials stay readable, the server's refusals (no key, non-loopback, bad token)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from noetl.errors import CredentialError
from noetl.runtime import tokens
from noetl.runtime.credentials import Keychain, MemoryCredentials, Use
from noetl.server.app import create_app
from noetl.server.settings import ServerSettings
from noetl.store import credentials, crypto, db, migrate
from security.conftest import Loopback, serve

CLIENT_SECRET = "client-secret-Qx81-never-shown"


@pytest.fixture
def token_server() -> Any:
    def answer(_handler: Any, state: Loopback) -> tuple[int, dict[str, Any]]:
        body = state.hits[-1]["body"]
        if f"client_secret={CLIENT_SECRET}" not in body:
            return 401, {"error": "invalid_client", "echo": body}
        return 200, {"access_token": f"tok-{len(state.hits)}", "expires_in": 3600, "token_type": "bearer"}

    yield from serve(answer)


def keychain(
    url: str, scope: str, use: Use, cache: tokens.TokenCache, secret: str = CLIENT_SECRET
) -> Keychain:
    entry = {
        "name": "erp",
        "kind": "oauth2",
        "scope": scope,
        "endpoint": url + "/token",
        "data": {"grant_type": "client_credentials", "client_id": "noetl", "client_secret": secret},
    }
    return Keychain([entry], MemoryCredentials(), use, cache)


async def test_oauth2_tokens_are_fetched_once_under_concurrency(token_server: Loopback) -> None:
    cache = tokens.TokenCache()
    use = Use("101", "finance/report", "start")
    chains = [keychain(token_server.url, "local", use, cache) for _ in range(25)]
    found = await asyncio.gather(*(chain.credential("erp", {}) for chain in chains))
    assert {f["data"]["access_token"] for f in found} == {"tok-1"}
    assert len(token_server.hits) == 1 and cache.fetches == 1
    # local: a new execution gets its own token; global: shared by every execution of the playbook
    other = await keychain(token_server.url, "local", Use("102", "finance/report"), cache).credential(
        "erp", {}
    )
    assert other["data"]["access_token"] == "tok-2"
    first = await keychain(token_server.url, "global", Use("103", "finance/report"), cache).credential(
        "erp", {}
    )
    again = await keychain(token_server.url, "global", Use("104", "finance/report"), cache).credential(
        "erp", {}
    )
    assert first["data"]["access_token"] == again["data"]["access_token"] == "tok-3"
    assert len(token_server.hits) == 3


async def test_oauth2_tokens_are_renewed_before_they_expire(token_server: Loopback) -> None:
    now = [1000.0]
    cache = tokens.TokenCache(clock=lambda: now[0])

    async def fetch() -> tokens.Token:
        token = await tokens.fetch_token(
            "erp", {"endpoint": token_server.url, "data": {"client_secret": CLIENT_SECRET}}
        )
        return tokens.Token(token.data, now[0] + 100)  # a 100 s token on the test's clock

    assert (await cache.get("k", fetch)).data["access_token"] == "tok-1"
    now[0] += 79  # 21 s left: more than a fifth of its life, still good
    assert (await cache.get("k", fetch)).data["access_token"] == "tok-1"
    now[0] += 2  # 19 s left: renewed before it expires
    assert (await cache.get("k", fetch)).data["access_token"] == "tok-2"


async def test_oauth2_failure_names_the_status_not_the_secret(token_server: Loopback) -> None:
    chain = keychain(token_server.url, "local", Use("1"), tokens.TokenCache(), secret="wrong-secret-77")
    with pytest.raises(CredentialError) as caught:
        await chain.credential("erp", {})
    assert "401" in caught.value.message and "invalid_client" in caught.value.message
    assert "wrong-secret-77" not in caught.value.message


def test_oauth2_token_in_a_playbook_is_used_and_masked(token_server: Loopback, tmp_path: Path) -> None:
    text = f"""
apiVersion: noetl.io/v2
kind: Playbook
metadata: {{name: oauth, path: finance/oauth}}
keychain:
  - name: erp
    kind: oauth2
    scope: global
    endpoint: {token_server.url}/token
    data: {{grant_type: client_credentials, client_id: noetl, client_secret: "{CLIENT_SECRET}"}}
workflow:
  - step: start
    loop: {{in: "{{{{ [1, 2, 3, 4, 5, 6] }}}}", iterator: n, mode: parallel}}
    tool: {{kind: python, input: {{t: "{{{{ keychain.erp.access_token }}}}"}}, code: "result = {{'t': t, 'len': len(t)}}"}}
"""
    (tmp_path / "oauth.yaml").write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "noetl", "run", "oauth.yaml", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "COMPLETED"
    rendered = json.dumps(result["step_results"])
    assert "tok-1" not in rendered and "***" in rendered and '"len": 5' in rendered
    assert "tok-1" not in done.stderr and CLIENT_SECRET not in done.stdout + done.stderr
    assert len(token_server.hits) == 1  # six parallel iterations, one token request


# ---- key rotation -----------------------------------------------------------------------------------


async def test_rotate_key_rewraps_everything_and_readers_follow(pg_database: str, tmp_path: Path) -> None:
    await migrate.apply(pg_database)
    key_file = tmp_path / "credentials.key"
    reader = crypto.Cipher.from_settings(None, key_file)  # a running server holding the old key
    async with await db.connect(pg_database) as conn:
        for n in range(5):
            await credentials.put(conn, f"c{n}", "bearer", {"token": f"t-{n}"}, cipher=reader)
    old_id = reader.key_id
    env = {**os.environ, "NOETL_DATABASE_URL": pg_database, "NOETL_ENCRYPTION_KEY_FILE": str(key_file)}
    env.pop("NOETL_ENCRYPTION_KEY", None)
    done = subprocess.run(
        [sys.executable, "-m", "noetl", "credential", "rotate-key"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "re-wrapped 5 credentials" in done.stdout
    assert len(crypto.read_key_file(key_file)) == 2  # the new key first, the old one kept for reading
    async with await db.connect(pg_database) as conn:
        # the running reader meets the new key id, reads the file again, and keeps working
        found = await credentials.get(conn, "c3", include_data=True, cipher=reader)
        assert found is not None and found["data"] == {"token": "t-3"}
        assert reader.key_id != old_id
        only_new = crypto.Cipher(crypto.read_key_file(key_file)[0])
        for n in range(5):
            record = await credentials.get(conn, f"c{n}", include_data=True, cipher=only_new)
            assert record is not None and record["data"] == {"token": f"t-{n}"}
        assert await credentials.rotate(conn, only_new) == {"rewrapped": 0, "unchanged": 5}
        # tampering is detected, never decrypted to garbage
        await conn.execute(  # flip every bit of one byte: always a change (writing 0x00 may not be)
            "UPDATE noetl.credential SET data_encrypted = set_byte(data_encrypted, 89, get_byte(data_encrypted, 89) # 255)"
            " WHERE name = 'c1'"
        )
        with pytest.raises(CredentialError, match="failed authentication"):
            await credentials.get(conn, "c1", include_data=True, cipher=only_new)
        with pytest.raises(CredentialError, match="credential 'c1'"):
            await credentials.rotate(conn, crypto.Cipher(bytes(32), [crypto.read_key_file(key_file)[0]]))


def test_rotation_with_an_env_key_keeps_old_records_readable() -> None:
    old, new = crypto.new_key(), crypto.new_key()
    sealed = crypto.Cipher.from_settings(old, None).encrypt(b"payload", b"n")
    both = crypto.Cipher.from_settings(new, None, old)
    rewrapped = both.rewrap(sealed, b"n")
    data_part = crypto.NONCE_BYTES + len(b"payload") + crypto.TAG_BYTES
    assert rewrapped != sealed and rewrapped[-data_part:] == sealed[-data_part:]  # only the wrapping changed
    assert crypto.Cipher.from_settings(new, None).decrypt(rewrapped, b"n") == b"payload"
    with pytest.raises(CredentialError, match="does not have"):
        crypto.Cipher.from_settings(old, None).decrypt(rewrapped, b"n")


# ---- the server's refusals --------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["noetl.server.main"], ["noetl", "server", "start"]])
def test_server_refuses_to_start_without_a_key(pg_database: str, tmp_path: Path, command: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOETL_")}
    env["NOETL_DATABASE_URL"] = pg_database
    done = subprocess.run(
        [sys.executable, "-m", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode != 0
    assert "refusing to start: no credential encryption key" in done.stderr


async def test_every_client_needs_the_service_token_unless_insecure_loopback(
    pg_database: str, tmp_path: Path
) -> None:
    """Loopback clients too (issue 10: user code could call the server on loopback without a token).
    The client address is set on the in-process transport: no other host can be reached from here."""
    secure = create_app(
        ServerSettings(database_url=pg_database, data_dir=tmp_path, service_token="svc-tok-1")
    )
    insecure = create_app(
        ServerSettings(
            database_url=pg_database, data_dir=tmp_path, service_token="svc-tok-1", insecure_loopback=True
        )
    )

    def client(app: Any, host: str, token: str | None = None) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(host, 40000))
        headers = {"Authorization": f"Bearer {token}"} if token else None
        return httpx.AsyncClient(transport=transport, base_url="http://noetl.test", headers=headers)

    async with secure.router.lifespan_context(secure):
        async with client(secure, "203.0.113.9") as remote:
            assert (await remote.get("/api/executions")).status_code == 401
            assert (await remote.get("/health")).status_code == 200
        async with client(secure, "203.0.113.9", "svc-tok-1") as remote:
            assert (await remote.get("/api/executions")).status_code == 200
        async with client(secure, "127.0.0.1") as local:
            refused = await local.get("/api/executions")
            assert refused.status_code == 401
            assert "requires its service token" in refused.json()["detail"]["reason"]
        async with client(secure, "127.0.0.1", "svc-tok-1") as local:
            assert (await local.get("/api/executions")).status_code == 200
    async with insecure.router.lifespan_context(insecure):
        async with client(insecure, "127.0.0.1") as local:
            assert (await local.get("/api/executions")).status_code == 200
        async with client(insecure, "127.0.0.1", "wrong") as local:
            assert (await local.get("/api/executions")).status_code == 401
        async with client(insecure, "203.0.113.9") as remote:
            assert (await remote.get("/api/executions")).status_code == 401
