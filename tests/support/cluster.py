"""A real NoETL cluster for tests: ``noetl server start`` and worker processes on loopback.

Processes write to log files (no pipes to fill up), are stopped with SIGTERM (SIGKILL after 15 s)
and waited for, so a test run leaves nothing behind. Failure tests kill and restart members of the
cluster through :class:`Cluster` (``kill``, ``restart_server``), which keeps track of every process
it started so that the teardown still stops them all.

The server requires its service token from every client, loopback ones included. Clusters started
here pass ``--insecure-loopback`` (``NOETL_SERVER_INSECURE_LOOPBACK``) unless asked not to, so tests
may call the API with plain ``httpx``; the ``noetl`` CLI sends the token anyway (it reads the
``service.token`` the server created in ``NOETL_DATA_DIR``), so the token path is exercised too.
``running_cluster(..., insecure_loopback=False)`` starts a cluster as users get it; then
:meth:`Cluster.headers` gives what a raw request must send.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

DEADLINE = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(check: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    """The first truthy value of ``check()``, polled every 50 ms; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


@dataclass
class Process:
    """A ``noetl`` subprocess whose output goes to a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: IO[bytes]
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)

    def kill(self) -> int:
        """SIGKILL the process (no chance to clean up), wait for it and close its log; its exit code."""
        if self.popen.poll() is None:
            self.popen.kill()
        code = self.popen.wait(timeout=15)
        self.log.close()
        return code

    def reap(self) -> None:
        """Wait for the SIGTERM'd process (SIGKILL after 15 s) and close its log."""
        try:
            self.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        finally:
            self.log.close()


def spawn(name: str, args: list[str], env: dict[str, str], logs: Path) -> Process:
    log_path = logs / f"{name}.log"
    log = log_path.open("wb")
    popen = subprocess.Popen(
        [sys.executable, "-m", "noetl", *args], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=logs
    )
    return Process(name, popen, log, log_path)


def healthy(url: str, server: Process) -> bool:
    if server.popen.poll() is not None:
        raise AssertionError(f"the server exited with {server.popen.returncode}:\n{server.output()}")
    try:
        return httpx.get(f"{url}/health", timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


def service_token(env: Mapping[str, str]) -> str | None:
    """The token a client of a server started with ``env`` sends: NOETL_SERVICE_TOKEN, else the
    ``service.token`` the server created in NOETL_DATA_DIR."""
    if env.get("NOETL_SERVICE_TOKEN"):
        return env["NOETL_SERVICE_TOKEN"]
    try:
        return (Path(env["NOETL_DATA_DIR"]) / "service.token").read_text().strip() or None
    except (KeyError, OSError):
        return None


def workers_registered(url: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        body = httpx.get(f"{url}/api/worker/pools", timeout=2.0, headers=headers).json()
    except (httpx.TransportError, json.JSONDecodeError):
        return 0
    workers = body.get("workers", body) if isinstance(body, dict) else body
    return len(workers)


@dataclass
class Cluster:
    url: str
    database_url: str
    env: dict[str, str]
    root: Path
    processes: list[Process]
    """Every process started for this cluster, dead or alive (the teardown stops the live ones)."""
    port: int = 0

    def headers(self) -> dict[str, str]:
        """What a raw HTTP request to this cluster's server sends: its service token."""
        token = service_token(self.env)
        return {"Authorization": f"Bearer {token}"} if token else {}

    @property
    def server(self) -> Process:
        """The current server process (the latest one started)."""
        return [p for p in self.processes if p.name.startswith("server")][-1]

    def worker(self, name: str) -> Process:
        """The worker process started with ``--name NAME`` (``w1``, ``w2``, ...)."""
        return next(p for p in self.processes if p.name == f"worker{name.removeprefix('w')}")

    def start_server(self) -> Process:
        """Start a server on the cluster's port and wait for its /health."""
        count = sum(1 for p in self.processes if p.name.startswith("server"))
        name = "server" if count == 0 else f"server-{count + 1}"
        server = spawn(name, ["server", "start", "--port", str(self.port)], self.env, self.root)
        self.processes.append(server)
        wait_until(lambda: healthy(self.url, server), f"the {name} process's /health")
        return server

    def restart_server(self) -> Process:
        """SIGKILL the server (no graceful shutdown) and start a new one on the same port."""
        self.server.kill()
        return self.start_server()


@contextmanager
def running_cluster(
    database_url: str,
    root: Path,
    workers: int = 2,
    concurrency: int = 4,
    *,
    env: Mapping[str, str] | None = None,
    insecure_loopback: bool = True,
) -> Iterator[Cluster]:
    """A server on a free loopback port and ``workers`` worker processes, stopped on exit.

    ``env`` adds ``NOETL_*`` settings for all of them, e.g. ``NOETL_WORKER_LEASE_SECONDS`` (workers)
    or ``NOETL_REAPER_INTERVAL`` (the server). ``insecure_loopback`` False: the server wants its
    token from loopback clients too (the default for users; see the module docstring).
    """
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("NOETL_")}
    environment.update(
        NOETL_DATABASE_URL=database_url,
        NOETL_DATA_DIR=str(root / "data"),  # the server creates credentials.key here; workers find it
        NOETL_LOG_LEVEL="warning",
        NOETL_SERVER_URL=url,
    )
    if insecure_loopback:
        environment["NOETL_SERVER_INSECURE_LOOPBACK"] = "true"
    environment.update(env or {})
    cluster = Cluster(url, database_url, environment, root, [], port)
    try:
        cluster.start_server()
        for n in range(1, workers + 1):
            args = ["worker", "start", "--concurrency", str(concurrency), "--grace", "1", "--name", f"w{n}"]
            cluster.processes.append(spawn(f"worker{n}", args, environment, root))
        token = service_token(environment)
        wait_until(lambda: workers_registered(url, token) >= workers, f"{workers} workers")
        yield cluster
    finally:
        for process in cluster.processes:
            process.terminate()
        for process in cluster.processes:
            process.reap()
