"""Queue bounds per pool: ``NOETL_MAX_QUEUE_DEPTH_BY_POOL`` overrides ``NOETL_MAX_QUEUE_DEPTH`` for a pool.

The app runs with no worker, so every started execution leaves its first command ready in its pool.
Pool ``limited`` may hold one: the second execute request is refused with 429 and ``Retry-After``,
while pool ``default`` (the global bound) still takes more.
"""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from noetl.errors import UsageError
from noetl.server.app import create_app
from noetl.server.settings import ServerSettings
from noetl.store import crypto


def playbook(path: str, pool: str) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: noetl.io/v2
        kind: Playbook
        metadata: {{name: {path.rsplit("/", 1)[-1]}, path: {path}}}
        workflow:
          - step: start
            spec: {{pool: {pool}}}
            tool: {{kind: noop}}
        """
    )


@pytest_asyncio.fixture(loop_scope="function")
async def client(pg_database: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = ServerSettings(
        database_url=pg_database,
        data_dir=tmp_path,
        encryption_key=crypto.new_key(),
        insecure_loopback=True,  # the test client sends no service token
        max_queue_depth=100,
        queue_depth_by_pool="limited=1, other=7",
        poll_seconds=0.05,
        shutdown_grace=2.0,
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://noetl.test") as api,
    ):
        yield api


@pytest.mark.asyncio(loop_scope="function")
async def test_a_pool_with_its_own_bound_refuses_beyond_it_and_others_keep_the_global_one(
    client: httpx.AsyncClient,
) -> None:
    for path, pool in (("tests/bounds/limited", "limited"), ("tests/bounds/plain", "default")):
        registered = await client.post("/api/catalog/register", json={"content": playbook(path, pool)})
        assert registered.status_code == 200, registered.text
    first = await client.post("/api/execute", json={"path": "tests/bounds/limited"})
    assert first.status_code == 200, first.text
    refused = await client.post("/api/execute", json={"path": "tests/bounds/limited"})
    assert refused.status_code == 429, refused.text
    assert refused.headers.get("Retry-After")
    assert "pool 'limited'" in refused.text and "bound is 1" in refused.text
    for _ in range(3):
        accepted = await client.post("/api/execute", json={"path": "tests/bounds/plain"})
        assert accepted.status_code == 200, accepted.text


def test_a_malformed_per_pool_bound_is_a_clear_error() -> None:
    settings = ServerSettings(queue_depth_by_pool="gpu=100, io=5000")
    assert (settings.queue_bound("gpu"), settings.queue_bound("io"), settings.queue_bound("x")) == (
        100,
        5000,
        10_000,
    )
    with pytest.raises(UsageError, match="NOETL_MAX_QUEUE_DEPTH_BY_POOL: 'gpu' is not POOL=BOUND"):
        ServerSettings(queue_depth_by_pool="gpu")
    with pytest.raises(UsageError, match="'io=lots'"):
        ServerSettings.from_env({"NOETL_MAX_QUEUE_DEPTH_BY_POOL": "io=lots"})
