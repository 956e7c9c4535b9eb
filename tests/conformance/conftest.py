"""Conformance harness: playbooks run through the ``noetl`` command exactly as a user runs them.

``noetl_run(yaml_text, *args)`` writes the playbook to a temporary directory, runs
``python -m noetl run FILE --json --events events.jsonl *args`` in a subprocess and returns the
exit code, the parsed outcome object (DECISIONS 25), the event log and stderr. Every test that
uses it runs twice: on the local runtime, and with ``--runtime distributed`` against a real
server and two worker processes (``distributed_cluster``), expecting the same outcome.

``http_server`` is a real HTTP server on 127.0.0.1 with scripted routes and a request counter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest


@dataclass
class RunResult:
    code: int
    outcome: dict[str, Any] | None
    events: list[dict[str, Any]]
    stdout: str
    stderr: str
    dir: Path

    def names(self, execution_id: str | None = None) -> list[str]:
        eid = execution_id or (self.outcome or {}).get("execution_id")
        return [e["event_type"] for e in self.events if eid is None or e["execution_id"] == eid]

    def of(self, name: str, step: str | None = None) -> list[dict[str, Any]]:
        eid = (self.outcome or {}).get("execution_id")
        return [
            e
            for e in self.events
            if e["event_type"] == name and (step is None or e["step"] == step) and e["execution_id"] == eid
        ]

    @property
    def status(self) -> str | None:
        return None if self.outcome is None else self.outcome["status"]

    @property
    def results(self) -> dict[str, Any]:
        assert self.outcome is not None, self.stderr
        return self.outcome["step_results"]


Runner = Callable[..., RunResult]


def _run(
    tmp_path: Path,
    text: str,
    *args: str,
    files: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    json_out: bool = True,
    timeout: float = 120,
) -> RunResult:
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name, content in (files or {}).items():
        (tmp_path / name).write_text(textwrap.dedent(content))
    pb = tmp_path / "playbook.yaml"
    pb.write_text(textwrap.dedent(text))
    events = tmp_path / "events.jsonl"
    cmd = [sys.executable, "-m", "noetl", "run", str(pb), "--events", str(events)]
    if json_out:
        cmd.append("--json")
    cmd.extend(args)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("NOETL_")}
    full_env.update(env or {})
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=full_env, timeout=timeout)
    outcome = None
    if json_out and proc.stdout.strip():
        outcome = json.loads(proc.stdout)
    log = []
    if events.exists():
        log = [json.loads(line) for line in events.read_text().splitlines() if line.strip()]
    return RunResult(proc.returncode, outcome, log, proc.stdout, proc.stderr, tmp_path)


@pytest.fixture
def noetl_run(tmp_path: Path, runtime: str, request: pytest.FixtureRequest) -> Runner:
    """Runs a playbook with ``noetl run`` on the runtime this test instance is parametrised with."""
    counter = iter(range(1000))
    extra: tuple[str, ...] = ()
    if runtime == "distributed":
        cluster = request.getfixturevalue("distributed_cluster")
        extra = ("--runtime", "distributed", "--server-url", cluster.url)

    def run(text: str, *args: str, **kw: Any) -> RunResult:
        return _run(tmp_path / f"run{next(counter)}", text, *args, *extra, **kw)

    return run


@dataclass
class Route:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    sequence: list[tuple[int, Any]] | None = None  # per-call (status, body); the last one repeats


class _Server:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.calls: dict[str, int] = {}
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.url = ""

    def route(
        self, path: str, status: int = 200, body: Any = None, sequence: list[tuple[int, Any]] | None = None
    ) -> str:
        self.routes[path] = Route(status, body, sequence=sequence)
        return self.url + path

    def count(self, path: str) -> int:
        with self.lock:
            return self.calls.get(path, 0)


@pytest.fixture
def http_server() -> Iterator[_Server]:
    state = _Server()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            path = self.path.split("?", 1)[0]
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            with state.lock:
                n = state.calls.get(path, 0)
                state.calls[path] = n + 1
                state.requests.append(
                    {"path": self.path, "method": self.command, "body": body, "headers": dict(self.headers)}
                )
            route = state.routes.get(path, Route(404, {"error": "not found"}))
            status, payload = route.status, route.body
            if route.sequence:
                status, payload = route.sequence[min(n, len(route.sequence) - 1)]
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


# ---- both runtimes ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def distributed_cluster(pg_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One server + 2 worker processes on a fresh database, shared by the conformance session."""
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    from support.cluster import running_cluster

    name = f"t_conformance_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(pg_server_url)
    url = urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))
    try:
        with running_cluster(url, tmp_path_factory.mktemp("conformance-cluster")) as cluster:
            yield cluster
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["local", "distributed"])
def runtime(request: pytest.FixtureRequest) -> str:
    return str(request.param)
