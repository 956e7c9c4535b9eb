"""A server whose database pool is exhausted answers 503 with Retry-After at once, and recovers.

The app runs with a pool of one connection and ``pool_timeout`` 0.5 s; the test holds that
connection, so a request cannot get one. It must be refused quickly (a client should retry later,
not hang for the default half minute), and served again once the connection is back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from noetl.server.app import create_app
from noetl.server.settings import ServerSettings
from noetl.store import crypto


@pytest_asyncio.fixture(loop_scope="function")
async def app_and_client(pg_database: str, tmp_path: Path) -> AsyncIterator[tuple[object, httpx.AsyncClient]]:
    settings = ServerSettings(
        database_url=pg_database,
        data_dir=tmp_path,
        encryption_key=crypto.new_key(),
        insecure_loopback=True,  # the test client sends no service token
        pool_max_size=1,
        pool_timeout=0.5,
        poll_seconds=0.05,
        reaper_interval=0.2,
        shutdown_grace=2.0,
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://noetl.test") as client,
    ):
        yield app, client


@pytest.mark.asyncio(loop_scope="function")
async def test_an_exhausted_pool_gets_503_with_retry_after_quickly_then_recovers(
    app_and_client: tuple[object, httpx.AsyncClient],
) -> None:
    app, client = app_and_client
    assert (await client.get("/api/executions")).status_code == 200
    pool = app.state.noetl.pool  # type: ignore[attr-defined]
    assert (
        pool.timeout == 0.5
    )  # NOETL_SERVER_POOL_TIMEOUT reaches the pool: requests wait that long, not 30 s
    async with pool.connection():
        refused = await client.get("/api/executions")
    assert refused.status_code == 503, refused.text
    assert refused.headers.get("Retry-After")
    assert "unavailable" in refused.text.lower()
    assert (await client.get("/api/executions")).status_code == 200
