"""Fixtures for the server's API tests: the app on a real PostgreSQL, and a real server process.

``api`` is an ``httpx.AsyncClient`` wired straight into the ASGI app (no socket) with the app's
lifespan running: migrations applied, pool open, orchestrator loop and reaper in the background.
``server_process`` starts ``python -m noetl.server.main`` on a free loopback port and yields its
base URL once ``/health`` answers.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
import pytest_asyncio

from noetl.server.app import create_app
from noetl.server.settings import ServerSettings
from noetl.store import crypto

T = TypeVar("T")
SERVICE_TOKEN = "server-fixtures-service-token"
DEADLINE_SECONDS = 15.0


@pytest.fixture(scope="module")
def server_settings(pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> ServerSettings:
    return ServerSettings(
        database_url=pg_database,
        data_dir=tmp_path_factory.mktemp("noetl-data"),
        encryption_key=crypto.new_key(),
        service_token=SERVICE_TOKEN,
        poll_seconds=0.05,
        reaper_interval=0.2,
        shutdown_grace=2.0,
        max_body_bytes=64 * 1024,
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(server_settings: ServerSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(server_settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=transport,
            base_url="http://noetl.test",
            headers={"Authorization": f"Bearer {SERVICE_TOKEN}"},
        ) as client,
    ):
        yield client


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str) -> T:
    """Poll ``probe`` until it returns something other than None, or fail after the deadline."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        found = await probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def server_process(pg_database: str, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """A real ``noetl`` server process; yields (base URL, process). Stopped with SIGTERM afterwards."""
    port = free_port()
    env = {
        **os.environ,
        "NOETL_DATABASE_URL": pg_database,
        "NOETL_SERVER_HOST": "127.0.0.1",
        "NOETL_SERVER_PORT": str(port),
        "NOETL_DATA_DIR": str(tmp_path),
        "NOETL_ENCRYPTION_KEY": crypto.new_key(),
        "NOETL_LOG_LEVEL": "warning",
        "NOETL_SERVER_INSECURE_LOOPBACK": "true",  # the tests call the API with plain httpx
    }
    log = (tmp_path / "server.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "noetl.server.main"], env=env, stdout=log, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, tmp_path / "server.log")
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=DEADLINE_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def _wait_healthy(url: str, proc: subprocess.Popen[str], log_path: Path) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)  # polling a condition with a deadline, not standing in for synchronisation
    raise AssertionError(f"server did not become healthy:\n{log_path.read_text()}")
