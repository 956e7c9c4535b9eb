"""A real ClickHouse server for tests: Debian's ``clickhouse-server`` on free loopback ports.

The server's packaged config is copied with its ports, paths and IPv6 listener changed, so the test
server shares nothing with a system one. ``.ci/run`` installs the package; on a machine without it
the tests that need it are skipped with a message saying how to install it (set
``NOETL_REQUIRE_SERVICES=1``, as CI does, to make that a failure instead).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import pytest

from support.cluster import free_port, wait_until

BINARY = "clickhouse-server"
PACKAGED_CONFIG = Path("/etc/clickhouse-server")


def require() -> None:
    """Skip (or fail under NOETL_REQUIRE_SERVICES) when ClickHouse is not installed."""
    if shutil.which(BINARY) and (PACKAGED_CONFIG / "config.xml").exists():
        return
    message = "ClickHouse is not installed (apt-get install clickhouse-server; .ci/run does)"
    if os.environ.get("NOETL_REQUIRE_SERVICES"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class ClickHouseServer:
    root: Path
    http_port: int
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        self.log = (self.root / "stdout.log").open("ab")
        self.process = subprocess.Popen(
            [BINARY, f"--config-file={self.root / 'config.xml'}"], stdout=self.log, stderr=subprocess.STDOUT
        )
        wait_until(self.ping, "ClickHouse's /ping", timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log is not None:
            self.log.close()
        self.process, self.log = None, None

    def ping(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(
                f"clickhouse-server exited: {(self.root / 'stdout.log').read_text()[-2000:]}"
            )
        try:
            return httpx.get(f"{self.url}/ping", timeout=1.0).status_code == 200
        except httpx.TransportError:
            return False

    def query(self, sql: str) -> str:
        response = httpx.post(self.url, content=sql.encode(), timeout=30)
        assert response.status_code == 200, response.text
        return response.text


def _config(root: Path, http_port: int) -> None:
    text = (PACKAGED_CONFIG / "config.xml").read_text()
    replacements = {
        "<http_port>8123</http_port>": f"<http_port>{http_port}</http_port>",
        "<tcp_port>9000</tcp_port>": f"<tcp_port>{free_port()}</tcp_port>",
        "<interserver_http_port>9009</interserver_http_port>": (
            f"<interserver_http_port>{free_port()}</interserver_http_port>"
        ),
        "/var/lib/clickhouse/": f"{root}/data/",
        "/var/log/clickhouse-server/": f"{root}/log/",
        "<listen_host>::1</listen_host>": "",
    }
    for old, new in replacements.items():
        text = text.replace(old, new)
    (root / "config.xml").write_text(text)
    shutil.copy(PACKAGED_CONFIG / "users.xml", root / "users.xml")


@contextmanager
def clickhouse(root: Path) -> Iterator[ClickHouseServer]:
    """A started ClickHouse under ``root``, stopped on exit."""
    require()
    root.mkdir(parents=True, exist_ok=True)
    server = ClickHouseServer(root, free_port())
    _config(root, server.http_port)
    server.start()
    try:
        yield server
    finally:
        server.stop()
