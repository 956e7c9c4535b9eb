"""Real metrics backends for tests: Debian's ``victoria-metrics`` and ``prometheus`` on free ports.

Each runs from a temporary data directory and is stopped on exit. ``.ci/run`` installs both; on a
machine without them the tests that need them are skipped with the install command (a failure under
``NOETL_REQUIRE_SERVICES=1``, as in CI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.cluster import free_port, wait_until


def require(binary: str, package: str) -> str:
    found = shutil.which(binary)
    if found:
        return found
    message = f"{binary} is not installed (apt-get install {package}; .ci/run does)"
    if os.environ.get("NOETL_REQUIRE_SERVICES"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class MetricsServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector of ``promql`` (``[]`` when it has no samples yet)."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()["data"]["result"]
        return found

    def value(self, promql: str) -> float | None:
        found = self.query(promql)
        return float(found[0]["value"][1]) if found else None


def _ready(url: str, path: str, process: subprocess.Popen[bytes], log: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"metrics server exited: {log.read_text()[-2000:]}")
    try:
        return httpx.get(f"{url}{path}", timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def _running(args: list[str], url: str, ready_path: str, root: Path) -> Iterator[MetricsServer]:
    log_path = root / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=root)
        try:
            wait_until(lambda: _ready(url, ready_path, process, log_path), f"{args[0]} to answer", 30)
            yield MetricsServer(url, process, log_path)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def victoria_metrics(root: Path) -> Iterator[MetricsServer]:
    binary = require("victoria-metrics", "victoria-metrics")
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = [
        binary,
        f"-httpListenAddr=127.0.0.1:{port}",
        f"-storageDataPath={root / 'data'}",
        "-retentionPeriod=1d",
        "-search.latencyOffset=0s",  # without it, points of the last 30 s stay hidden from queries
    ]
    with _running(args, f"http://127.0.0.1:{port}", "/health", root) as server:
        yield server


@contextmanager
def prometheus(root: Path) -> Iterator[MetricsServer]:
    binary = require("prometheus", "prometheus")
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = root / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1h\nscrape_configs: []\n")
    args = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={root / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-remote-write-receiver",
    ]
    with _running(args, f"http://127.0.0.1:{port}", "/-/ready", root) as server:
        yield server
