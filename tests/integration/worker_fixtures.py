"""Fixtures for worker tests: a migrated database, real worker processes, waiting with deadlines.

``migrated_url`` is this module's fresh ``pg_database`` with the NoETL schema applied.
``spawn_worker(**settings)`` starts ``python -m noetl.worker`` as a real subprocess configured
through its environment variables (``NOETL_WORKER_*``) and kills whatever is still running at
teardown. ``eventually(check)`` polls a condition until it holds or a deadline passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from noetl.worker.settings import ENVIRONMENT

T = TypeVar("T")

DEADLINE = 20.0
"""Seconds any awaited condition may take before the test fails (generous: CI machines are slow)."""


@pytest.fixture(scope="module")
def migrated_url(pg_database: str) -> str:
    from noetl.store import migrate

    asyncio.run(migrate.apply(pg_database))
    return pg_database


async def eventually(check: Callable[[], Awaitable[T]], what: str, timeout: float = DEADLINE) -> T:
    """The first truthy value of ``check()``, polled every 20 ms; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.02)


class WorkerProcess:
    """A ``python -m noetl.worker`` subprocess; its output goes to a log file read on failure."""

    def __init__(self, url: str, log_dir: Path, env: dict[str, str] | None = None, **settings: Any) -> None:
        self.worker_id = str(settings.pop("worker_id", f"test-worker-{secrets.token_hex(4)}"))
        self.log_path = log_dir / f"{self.worker_id}.log"
        environment = {
            **os.environ,
            **(env or {}),
            "NOETL_DATABASE_URL": url,
            "NOETL_WORKER_ID": self.worker_id,
        }
        for name, value in settings.items():
            text = ",".join(value) if isinstance(value, list | tuple) else str(value)
            environment[ENVIRONMENT[name]] = text
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "noetl.worker"], env=environment, stdout=log, stderr=subprocess.STDOUT
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def exit_code(self, timeout: float = DEADLINE) -> int:
        """Wait for the process to exit; its exit code."""

        async def exited() -> bool:
            return self.process.poll() is not None

        await eventually(exited, f"worker {self.worker_id} to exit\n{self.log()}", timeout)
        code = self.process.returncode
        assert code is not None
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def spawn_worker(migrated_url: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """``spawn_worker(pools=["p1"], concurrency=2, ...)`` starts a worker process on this module's database."""
    started: list[WorkerProcess] = []

    def spawn(env: dict[str, str] | None = None, **settings: Any) -> WorkerProcess:
        settings.setdefault("poll_seconds", 0.2)
        worker = WorkerProcess(migrated_url, tmp_path, env, **settings)
        started.append(worker)
        return worker

    yield spawn
    for worker in started:
        worker.kill()


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def kill_group(pid: int) -> None:
    """SIGKILL a shell task's process group (it outlives a worker killed with SIGKILL)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
