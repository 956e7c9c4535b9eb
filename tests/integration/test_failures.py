"""Failure tests of the distributed runtime, against real processes (issue 3, scope item 7).

Every test runs ``noetl server start`` and ``noetl worker start`` processes (``support.cluster``) on
a database of its own, breaks something on purpose and checks what the event log says afterwards:

* a worker SIGKILLed mid-step: its command runs again once the lease expires, is recorded once,
  and the execution completes (at-least-once execution, exactly-once recording);
* the server SIGKILLed and restarted mid-execution: the execution completes from the event log;
* PostgreSQL stopped and started again (its own embedded instance, driven with ``pg_ctl``): the
  server and the workers reconnect and the execution completes;
* the same worker report posted twice (``/api/events`` and ``/api/events/batch``): routed once;
* claimers racing for one command (``/api/commands/claim``): exactly one gets it;
* replay (``/api/replay/state``) of a finished execution equals the live outcome, with a checksum
  that is the same on every call and after a server restart;
* cancelling a parent cancels the child started by its ``kind: playbook`` task, and stops the
  child's running command;
* a parent's call parked while its child runs comes back once the child (whose worker died) ends,
  and attaches to that child.

Steps that must stay running wait for a "gate" file the test creates (and write a marker or
their pid first), so each test knows exactly where the execution stands when it strikes, and
nothing keeps running after the test: teardowns open every gate.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest

from noetl.dsl.model import JSON
from noetl.engine import events as ev
from noetl.engine.state import checksum, fold
from noetl.runtime.runner import Outcome
from noetl.store.ports import Lease
from noetl.worker.command import report_of
from support.cluster import Cluster, running_cluster, wait_until

DEADLINE = 30.0
"""Seconds any awaited condition may take (generous: CI machines are slow)."""

FAST_RECOVERY = {
    "NOETL_WORKER_LEASE_SECONDS": "2",  # heartbeats every 2/3 s; a dead worker's lease expires in 2 s
    "NOETL_REAPER_INTERVAL": "0.3",
    "NOETL_ORCHESTRATOR_POLL_SECONDS": "0.2",
}
"""Cluster settings that make recovery quick enough for a test (the defaults are 60 s and 5 s)."""

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")
RECORDED = (ev.COMMAND_COMPLETED, ev.COMMAND_FAILED)
FINAL = (ev.PLAYBOOK_COMPLETED, ev.PLAYBOOK_FAILED, ev.PLAYBOOK_CANCELLED)


def playbook(path: str, body: str) -> str:
    head = f"apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {{name: {path.rsplit('/', 1)[-1]}, path: {path}}}\n"
    return head + textwrap.dedent(body).lstrip("\n")


# ---- talking to the cluster ------------------------------------------------------------------------


class Api:
    """The cluster's HTTP API; calls made while the server is down raise ``httpx.TransportError``."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=10.0)

    def close(self) -> None:
        self.http.close()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = self.http.post(path, json=body)
        assert response.status_code == 200, f"POST {path}: {response.status_code} {response.text}"
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params=params)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
        return response.json()

    def register(self, text: str) -> None:
        self.post("/api/catalog/register", {"content": text})

    def execute(self, path: str, payload: dict[str, Any] | None = None) -> str:
        started = self.post("/api/execute", {"path": path, "payload": payload or {}})
        assert started["status"] == "RUNNING"
        return str(started["execution_id"])

    def status(self, execution_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.get(f"/api/executions/{execution_id}/status")
        return found

    def events(self, execution_id: str) -> list[dict[str, Any]]:
        """The whole event log of an execution, page by page."""
        found: list[dict[str, Any]] = []
        since = 0
        while True:
            page = self.get(f"/api/executions/{execution_id}/events", since_event_id=since, limit=500)
            found.extend(page["events"])
            since = page["next_since_event_id"]
            if not page["has_more"]:
                return found

    def finished(self, execution_id: str, timeout: float = DEADLINE) -> dict[str, Any]:
        """The status once the execution is terminal (riding out moments when the server or its
        database is away: no connection, or 503)."""

        def terminal() -> dict[str, Any] | None:
            try:
                response = self.http.get(f"/api/executions/{execution_id}/status")
            except httpx.TransportError:
                return None
            if response.status_code == 503:  # PostgreSQL out of reach: the server says "retry later"
                return None
            assert response.status_code == 200, response.text
            found: dict[str, Any] = response.json()
            return found if found["status"] in TERMINAL else None

        found: dict[str, Any] = wait_until(terminal, f"execution {execution_id} to finish", timeout)
        return found


@contextlib.contextmanager
def api_of(cluster: Cluster) -> Iterator[Api]:
    api = Api(cluster.url)
    try:
        yield api
    finally:
        api.close()


def rows(database_url: str, query: str, *params: object) -> list[tuple[Any, ...]]:
    """Run one query on its own short connection (the test's view of the database)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def commands_of(database_url: str, execution_id: str) -> list[dict[str, Any]]:
    """The queue rows of an execution, oldest first."""
    found = rows(
        database_url,
        "SELECT command_id, step, idx, status, attempt, worker_id, recorded FROM noetl.command"
        " WHERE execution_id = %s ORDER BY seq",
        int(execution_id),
    )
    keys = ("command_id", "step", "index", "status", "attempt", "worker_id", "recorded")
    return [dict(zip(keys, row, strict=True)) for row in found]


def gated(marker: Path, gate: Path, then: str) -> str:
    """A shell command that records that it started, waits for ``gate`` to exist, then runs ``then``."""
    return f"echo $$ >> {marker}; while [ ! -e {gate} ]; do sleep 0.02; done; {then}"


def assert_log_is_clean(events: list[dict[str, Any]]) -> None:
    """Event ids 1..N without gaps, no event twice, and every command issued/recorded exactly once."""
    assert [e["event_id"] for e in events] == list(range(1, len(events) + 1))
    identities = Counter(
        (e["event_type"], e["step"], e["command_id"], repr(sorted(e["data"].items()))) for e in events
    )
    assert [key for key, n in identities.items() if n > 1] == []
    issued = [e["command_id"] for e in events if e["event_type"] == ev.COMMAND_ISSUED]
    assert len(issued) == len(set(issued)), "a command was issued twice"
    recorded = Counter(e["command_id"] for e in events if e["event_type"] in RECORDED)
    assert {command_id: recorded[command_id] for command_id in issued} == dict.fromkeys(issued, 1)
    assert len([e for e in events if e["event_type"] in FINAL]) == 1


# ---- fixtures --------------------------------------------------------------------------------------


@pytest.fixture
def database(pg_server_url: str) -> Iterator[str]:
    """A fresh database for one test's cluster (a killed worker stays in the registry of its own)."""
    name = f"t_failures_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(pg_server_url)
    try:
        yield urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def gates(tmp_path: Path) -> Iterator[Path]:
    """A directory for marker and gate files; every ``*.gate`` file is created on teardown, so shell
    tasks still waiting (e.g. orphans of a SIGKILLed worker) end by themselves."""
    directory = tmp_path / "gates"
    directory.mkdir()
    try:
        yield directory
    finally:
        for name in ("worker.gate", "server.gate", "postgres.gate", "child.gate"):
            (directory / name).touch()


# ---- 1. a worker killed mid-step --------------------------------------------------------------------

WORKER_KILL = """
workflow:
  - step: start
    tool: {kind: python, code: "result = 21"}
    next: {arcs: [{step: slow}]}
  - step: slow
    tool:
      kind: shell
      command: "echo $$ >> RUNS; if [ $(wc -l < RUNS) -eq 1 ]; then while [ ! -e GATE ]; do sleep 0.02; done; fi; echo slow-done"
    next: {arcs: [{step: end}]}
  - step: end
    tool: {kind: python, input: {x: "{{ start }}", s: "{{ slow.stdout }}"}, code: "result = {'x': x * 2, 'slow': s.strip()}"}
"""


def test_worker_killed_mid_step_its_command_runs_again_and_is_recorded_once(
    database: str, tmp_path: Path, gates: Path
) -> None:
    runs, gate = gates / "slow.runs", gates / "worker.gate"
    text = WORKER_KILL.replace("RUNS", str(runs)).replace("GATE", str(gate))
    with (
        running_cluster(database, tmp_path / "cluster", env=FAST_RECOVERY) as cluster,
        api_of(cluster) as api,
    ):
        api.register(playbook("failures/worker_kill", text))
        execution_id = api.execute("failures/worker_kill")
        wait_until(lambda: runs.exists() and runs.read_text().strip(), "the slow step to start")
        [(command_id, attempt, holder)] = rows(
            database,
            "SELECT c.command_id, c.attempt, r.name FROM noetl.command c"
            " JOIN noetl.runtime r ON r.worker_id = c.worker_id"
            " WHERE c.execution_id = %s AND c.step = 'slow' AND c.status = 'leased'",
            int(execution_id),
        )
        assert attempt == 1
        victim = cluster.worker(holder)
        assert victim.kill() == -signal.SIGKILL
        gate.touch()  # the orphaned first run may end now; the queue no longer listens to it

        status = api.finished(execution_id)
        events = api.events(execution_id)
        queue = commands_of(database, execution_id)
        names = dict(rows(database, "SELECT worker_id, name FROM noetl.runtime"))

    assert status["status"] == "COMPLETED", status
    assert status["result"] == {"x": 42, "slow": "slow-done"}
    # at-least-once execution: the step's shell command ran twice, in two different processes ...
    pids = runs.read_text().split()
    assert len(pids) == 2 and pids[0] != pids[1]
    # ... on the other worker, after the reaper returned the expired lease to the queue
    [slow] = [c for c in queue if c["step"] == "slow"]
    assert slow["command_id"] == command_id and slow["attempt"] == 2 and slow["status"] == "done"
    assert names.get(slow["worker_id"]) in {"w1", "w2"} - {holder}
    # exactly-once recording: one result for the command in the log
    of_command = Counter(e["event_type"] for e in events if e["command_id"] == command_id)
    assert of_command[ev.COMMAND_ISSUED] == 1
    assert of_command[ev.COMMAND_COMPLETED] == 1 and of_command[ev.CALL_DONE] == 1
    assert of_command[ev.COMMAND_FAILED] == 0
    assert_log_is_clean(events)


# ---- 2. the server killed and restarted mid-execution -----------------------------------------------

SERVER_KILL = """
workload: {items: [1, 2, 3, 4, 5, 6]}
workflow:
  - step: start
    loop: {in: "{{ items }}", iterator: item, spec: {mode: sequential}}
    tool:
      kind: shell
      command: "if [ {{ iter.item }} -eq 3 ]; then GATED_COMMAND; fi; sleep 0.05; echo {{ iter.item }}"
    next: {arcs: [{step: total}]}
  - step: total
    tool: {kind: python, input: {rs: "{{ start.results }}"}, code: "result = sum(int(r['stdout']) for r in rs)"}
"""


def test_server_killed_and_restarted_mid_execution_completes_from_the_log(
    database: str, tmp_path: Path, gates: Path
) -> None:
    marker, gate = gates / "third.started", gates / "server.gate"
    text = SERVER_KILL.replace("GATED_COMMAND", gated(marker, gate, "true"))
    # Workers that leave every decision to the server: while it is down, nothing is decided.
    server_decides = {**FAST_RECOVERY, "NOETL_WORKER_DECIDE": "false"}
    with (
        running_cluster(database, tmp_path / "cluster", env=server_decides) as cluster,
        api_of(cluster) as api,
    ):
        api.register(playbook("failures/server_kill", text))
        execution_id = api.execute("failures/server_kill")
        wait_until(marker.exists, "the third iteration to start")
        assert cluster.server.kill() == -signal.SIGKILL
        gate.touch()

        # The worker reports the third iteration while no server runs: the outcome waits, unrecorded,
        # and nothing decides the fourth iteration.
        def third_reported() -> bool:
            third = [c for c in commands_of(database, execution_id) if c["index"] == 2]
            return bool(third) and third[0]["status"] == "done"

        wait_until(third_reported, "the worker to report the third iteration")
        queue = commands_of(database, execution_id)
        assert [(c["index"], c["recorded"]) for c in queue] == [(0, True), (1, True), (2, False)]
        [(last_event_before,)] = rows(
            database, "SELECT last_event_id FROM noetl.execution WHERE execution_id = %s", int(execution_id)
        )

        cluster.start_server()
        status = api.finished(execution_id)
        events = api.events(execution_id)

    assert status["status"] == "COMPLETED", status
    assert status["result"] == 21
    assert last_event_before < len(events)
    assert [e["data"].get("index") for e in events if e["event_type"] == ev.COMMAND_COMPLETED] == [
        0,
        1,
        2,
        3,
        4,
        5,
        None,
    ]
    assert [e["event_type"] for e in events].count(ev.STEP_ENTER) == 2
    assert [e["event_type"] for e in events].count(ev.LOOP_DONE) == 1
    assert_log_is_clean(events)


def test_deciding_workers_finish_an_execution_while_the_server_is_down(
    database: str, tmp_path: Path, gates: Path
) -> None:
    """Workers record and decide in their report's transaction: no server is needed to go on."""
    marker, gate = gates / "third.started", gates / "server.gate"
    text = SERVER_KILL.replace("GATED_COMMAND", gated(marker, gate, "true"))
    with (
        running_cluster(database, tmp_path / "cluster", env=FAST_RECOVERY) as cluster,
        api_of(cluster) as api,
    ):
        api.register(playbook("failures/server_down", text))
        execution_id = api.execute("failures/server_down")
        wait_until(marker.exists, "the third iteration to start")
        assert cluster.server.kill() == -signal.SIGKILL
        gate.touch()

        def finished() -> str | None:
            [(status,)] = rows(
                database, "SELECT status FROM noetl.execution WHERE execution_id = %s", int(execution_id)
            )
            return None if status == "RUNNING" else str(status)

        assert wait_until(finished, "the workers to finish the execution without a server") == "COMPLETED"
        queue = commands_of(database, execution_id)
        assert all(c["recorded"] for c in queue), queue

        cluster.start_server()
        status = api.finished(execution_id)
        events = api.events(execution_id)

    assert status["status"] == "COMPLETED", status
    assert status["result"] == 21
    assert [e["data"].get("index") for e in events if e["event_type"] == ev.COMMAND_COMPLETED] == [
        0,
        1,
        2,
        3,
        4,
        5,
        None,
    ]
    assert_log_is_clean(events)


# ---- 3. PostgreSQL restarted while an execution runs ------------------------------------------------


class Postgres:
    """A PostgreSQL of the test's own (pgserver's binaries, a temporary data directory), stopped and
    started with ``pg_ctl`` on the same data directory, socket directory and port."""

    def __init__(self, pgdata: Path) -> None:
        from noetl.store import embedded

        self.pgdata = pgdata
        self.url = embedded.ensure(pgdata)
        from pgserver.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(pgdata)
        assert info is not None and info.socket_dir is not None
        self.socket_dir, self.port = info.socket_dir, info.port or 5432

    def pg_ctl(self, *args: str) -> None:
        from pgserver._commands import POSTGRES_BIN_PATH

        # pg_ctl refuses to run as root; pgserver then runs PostgreSQL as its own service user.
        user = self.pgdata.owner() if os.geteuid() == 0 else None
        done = subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.pgdata), *args],
            capture_output=True,
            text=True,
            user=user,
            cwd=self.pgdata,
            timeout=60,
        )
        assert done.returncode == 0, f"pg_ctl {' '.join(args)}: {done.stdout}{done.stderr}"

    def stop(self) -> None:
        self.pg_ctl("-m", "fast", "-w", "stop")

    def start(self) -> None:
        self.pg_ctl(
            "-w",
            "-o",
            '-h ""',
            "-o",
            f"-k {self.socket_dir}",
            "-o",
            f"-p {self.port}",
            "-l",
            str(self.pgdata / "log"),
            "start",
        )

    def refuses_connections(self) -> bool:
        try:
            with psycopg.connect(self.url, connect_timeout=2):
                return False
        except psycopg.OperationalError:
            return True


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    from noetl.store import embedded

    # Not under pytest's tmp_path: when tests run as root, pgserver runs PostgreSQL as another user,
    # and pytest keeps resetting its base directory to mode 0700 (see test_embedded.py).
    base = Path(tempfile.mkdtemp(prefix="noetl-failures-"))
    pgdata = base / "pg"
    try:
        yield Postgres(pgdata)
    finally:
        embedded.stop(pgdata)
        shutil.rmtree(base, ignore_errors=True)


POSTGRES_RESTART = """
workflow:
  - step: start
    tool: {kind: python, code: "result = 5"}
    next: {arcs: [{step: gate}]}
  - step: gate
    tool: {kind: shell, command: "GATED_COMMAND"}
    next: {arcs: [{step: after}]}
  - step: after
    tool: {kind: python, input: {a: "{{ start }}", b: "{{ gate.stdout }}"}, code: "result = a * int(b)"}
    next: {arcs: [{step: end}]}
  - step: end
    tool: {kind: python, input: {x: "{{ after }}"}, code: "result = x + 1"}
"""


def test_postgres_restart_server_and_workers_recover(postgres: Postgres, tmp_path: Path, gates: Path) -> None:
    marker, gate, done = gates / "gate.started", gates / "postgres.gate", gates / "gate.done"
    text = POSTGRES_RESTART.replace("GATED_COMMAND", gated(marker, gate, f"touch {done}; echo 7"))
    with (
        running_cluster(postgres.url, tmp_path / "cluster", env=FAST_RECOVERY) as cluster,
        api_of(cluster) as api,
    ):
        api.register(playbook("failures/postgres_restart", text))
        execution_id = api.execute("failures/postgres_restart")
        wait_until(marker.exists, "the gated step to start")

        postgres.stop()
        wait_until(postgres.refuses_connections, "PostgreSQL to refuse connections")
        gate.touch()  # the step finishes while the database is down: its report must wait and retry
        wait_until(done.exists, "the gated step to finish")
        assert postgres.refuses_connections()  # so the step's report cannot have landed yet

        postgres.start()
        # The first request after the restart already works: the server's pool replaces the
        # connections PostgreSQL ended instead of failing a request with each of them.
        assert api.status(execution_id)["execution_id"] == execution_id
        status = api.finished(execution_id, timeout=60.0)
        events = api.events(execution_id)

        # everything works again: a new execution runs end to end
        again = api.execute("failures/postgres_restart")
        second = api.finished(again)
        assert all(p.popen.poll() is None for p in cluster.processes), "a process died with the database"

    for process in cluster.processes:  # lost connections are expected: warnings, not crashes
        assert "Traceback" not in process.output(), f"{process.name}:\n{process.output()}"
    assert status["status"] == "COMPLETED", status
    assert status["result"] == 36
    assert second["status"] == "COMPLETED" and second["result"] == 36
    assert_log_is_clean(events)


async def test_pooled_connections_the_database_ended_are_replaced_not_handed_out(pg_database: str) -> None:
    """What lets the server answer the first request after a PostgreSQL restart: its idle pooled
    connections were ended by the database, and the pool must not hand them out."""
    from noetl.store import db

    pool = await db.pool(pg_database, min_size=3, max_size=3)
    try:
        async with pool.connection() as a, pool.connection() as b, pool.connection() as c:
            ended = [await backend_pid(conn) for conn in (a, b, c)]
        rows(pg_database, "SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", ended)
        wait_until(
            lambda: not rows(pg_database, "SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s)", ended),
            "the database to end the pooled connections",
        )
        for _ in range(3):
            async with pool.connection() as conn:
                assert await backend_pid(conn) not in ended
    finally:
        await pool.close()


async def backend_pid(conn: Any) -> int:
    cursor = await conn.execute("SELECT pg_backend_pid()")
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


# ---- 4. the same report posted twice; 5. claimers racing for one command -------------------------------

STEPS = """
workflow:
  - step: first
    tool: {kind: noop}
    next: {arcs: [{step: second}]}
  - step: second
    tool: {kind: noop}
    next: {arcs: [{step: third}]}
  - step: third
    tool: {kind: noop}
"""

ONE_STEP = """
workflow:
  - step: start
    tool: {kind: noop}
"""


@pytest.fixture(scope="module")
def bare_cluster(pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A server without workers: the test itself claims and reports, like a remote worker over HTTP."""
    with running_cluster(
        pg_database, tmp_path_factory.mktemp("bare"), workers=0, env=FAST_RECOVERY
    ) as cluster:
        yield cluster


def claim_one(api: Api, worker_id: str, step: str) -> dict[str, Any]:
    """Claim until the next ready command arrives (the orchestrator issues it asynchronously)."""

    def claimed() -> dict[str, Any] | None:
        found = api.post("/api/commands/claim", {"worker_id": worker_id, "limit": 10, "lease_seconds": 60})
        return found["commands"][0] if found["commands"] else None

    lease: dict[str, Any] = wait_until(claimed, f"a command for step {step}")
    assert lease["step"] == step and lease["attempt"] == 1
    return lease


def report(worker_id: str, lease: dict[str, Any], result: JSON) -> dict[str, Any]:
    """A worker's report for a lease, with the events built exactly as a worker builds them."""
    leased = Lease(
        command_id=lease["command_id"],
        execution_id=int(lease["execution_id"]),
        catalog_id=int(lease["catalog_id"]),
        step=lease["step"],
        index=lease["index"],
        attempt=lease["attempt"],
        context=lease["context"],
        pool=lease["pool"],
        priority=lease["priority"],
    )
    finished = report_of(leased, Outcome("ok", result, None, {}, 1, 1.0))
    return {
        "execution_id": lease["execution_id"],
        "command_id": lease["command_id"],
        "attempt": lease["attempt"],
        "worker_id": worker_id,
        "ok": True,
        "events": finished.events,
    }


def claimer(api: Api, worker_id: str) -> Callable[[], list[dict[str, Any]]]:
    """A call that claims at most one command for ``worker_id``."""

    def claim() -> list[dict[str, Any]]:
        body = {"worker_id": worker_id, "limit": 1, "lease_seconds": 60}
        found: list[dict[str, Any]] = api.post("/api/commands/claim", body)["commands"]
        return found

    return claim


def at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run ``calls`` in threads released together by a barrier; their results in order."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        barrier.wait(timeout=DEADLINE)
        return call()

    with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def test_the_same_report_posted_twice_is_routed_once(bare_cluster: Cluster) -> None:
    worker = "test-remote-worker"
    with api_of(bare_cluster) as api, api_of(bare_cluster) as other:
        api.register(playbook("failures/duplicates", STEPS))
        execution_id = api.execute("failures/duplicates")

        first = claim_one(api, worker, "first")
        body = report(worker, first, {"n": 1})
        answers = at_once([lambda: api.post("/api/events", body), lambda: other.post("/api/events", body)])
        assert sorted(a["status"] for a in answers) == ["accepted", "duplicate"]

        second = claim_one(api, worker, "second")
        body = report(worker, second, {"n": 2})
        assert api.post("/api/events/batch", {"reports": [body, body]}) == {"accepted": 1, "duplicates": 1}
        assert api.post("/api/events/batch", {"reports": [body]}) == {"accepted": 0, "duplicates": 1}
        assert api.post("/api/events", report(worker, first, {"n": "late"}))["status"] == "duplicate"

        third = claim_one(api, worker, "third")
        assert api.post("/api/events", report(worker, third, {"n": 3}))["status"] == "accepted"
        status = api.finished(execution_id)
        assert api.post("/api/events", report(worker, third, {"n": 3}))["status"] == "duplicate"
        assert api.post("/api/events/batch", {"reports": [body]}) == {"accepted": 0, "duplicates": 1}
        events = api.events(execution_id)
        queue = commands_of(bare_cluster.database_url, execution_id)

    assert status["status"] == "COMPLETED" and status["result"] == {"n": 3}
    assert [c["step"] for c in queue] == ["first", "second", "third"]  # each next step issued once
    assert all(c["status"] == "done" and c["recorded"] for c in queue)
    completed = [e["command_id"] for e in events if e["event_type"] == ev.COMMAND_COMPLETED]
    assert completed == [first["command_id"], second["command_id"], third["command_id"]]
    entered = [e["step"] for e in events if e["event_type"] == ev.STEP_ENTER]
    assert entered == ["first", "second", "third"]
    assert [e["data"]["result"] for e in events if e["event_type"] == ev.CALL_DONE] == [
        {"n": 1},
        {"n": 2},
        {"n": 3},
    ]
    assert_log_is_clean(events)


def test_claimers_racing_for_one_command_exactly_one_wins(bare_cluster: Cluster) -> None:
    racers = 6
    with contextlib.ExitStack() as stack:
        apis = [stack.enter_context(api_of(bare_cluster)) for _ in range(racers)]
        apis[0].register(playbook("failures/race", ONE_STEP))
        for round_ in range(5):
            execution_id = apis[0].execute("failures/race")

            def ready(eid: str = execution_id) -> bool:
                return [c["status"] for c in commands_of(bare_cluster.database_url, eid)] == ["ready"]

            wait_until(ready, "the command to be ready")
            claimed = at_once([claimer(api, f"racer-{round_}-{n}") for n, api in enumerate(apis)])
            winners = [n for n, got in enumerate(claimed) if got]
            assert len(winners) == 1, claimed
            [lease] = claimed[winners[0]]
            [row] = commands_of(bare_cluster.database_url, execution_id)
            assert lease["command_id"] == row["command_id"] and lease["attempt"] == 1
            assert row["status"] == "leased" and row["attempt"] == 1
            assert row["worker_id"] == f"racer-{round_}-{winners[0]}"


# ---- 6. replay --------------------------------------------------------------------------------------

REPLAYED = """
workload: {items: [1, 2, 3, 4], factor: 3}
workflow:
  - step: start
    tool: {kind: python, input: {f: "{{ factor }}"}, code: "result = {'f': f}"}
    set: {ctx.seen: "{{ output.data.f }}"}
    next: {arcs: [{step: squares}]}
  - step: squares
    loop: {in: "{{ items }}", iterator: item, spec: {mode: parallel, max_in_flight: 2}}
    tool: {kind: python, input: {n: "{{ iter.item }}", f: "{{ factor }}"}, code: "result = n * n * f"}
    next: {arcs: [{step: end}]}
  - step: end
    tool: {kind: python, input: {all: "{{ squares.results }}"}, code: "result = {'total': sum(all), 'count': len(all)}"}
    set: {ctx.total: "{{ output.data.total }}"}
"""


def local_outcome(file: Path) -> dict[str, Any]:
    """What ``noetl run`` (the local runtime) says about the same playbook."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOETL_")}
    done = subprocess.run(
        [sys.executable, "-m", "noetl", "run", str(file), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    outcome: dict[str, Any] = json.loads(done.stdout)
    return outcome


def test_replay_equals_the_live_outcome_and_its_checksum_is_stable(database: str, tmp_path: Path) -> None:
    text = playbook("failures/replay", REPLAYED)
    file = tmp_path / "replay.yaml"
    file.write_text(text)
    local = local_outcome(file)
    with (
        running_cluster(database, tmp_path / "cluster", env=FAST_RECOVERY) as cluster,
        api_of(cluster) as api,
    ):
        api.register(text)
        execution_id = api.execute("failures/replay")
        live = api.finished(execution_id)
        events = api.events(execution_id)
        replayed = api.get("/api/replay/state", execution_id=execution_id)
        again = api.get("/api/replay/state", execution_id=execution_id)
        middle = len(events) // 2
        partial = api.get("/api/replay/state", execution_id=execution_id, as_of_event_id=middle)
        partial_again = api.get("/api/replay/state", execution_id=execution_id, as_of_event_id=middle)

        cluster.restart_server()
        after_restart = api.get("/api/replay/state", execution_id=execution_id)
        partial_after_restart = api.get("/api/replay/state", execution_id=execution_id, as_of_event_id=middle)

    state = replayed["state"]
    # the replayed state is the live outcome: the server's projection ...
    assert live["status"] == "COMPLETED"
    assert replayed["status"] == state["status"] == live["status"]
    assert state["final_result"] == live["result"] == {"total": 90, "count": 4}
    assert state["error"] is None and live["error"] is None
    # ... and what the local runtime computed for the same playbook
    assert state["final_result"] == local["final_result"]
    assert state["results"] == local["step_results"]
    assert state["variables"] == local["variables"]
    assert state["executed"] == local["executed_steps"]
    assert state["variables"]["seen"] == 3 and state["variables"]["total"] == 90
    # the checksum: the engine's over the same log, the same on every call, and after a restart
    assert replayed["as_of_event_id"] == len(events)
    assert replayed["checksum"] == checksum(fold([ev.Event.from_dict(e) for e in events]))
    assert again["checksum"] == after_restart["checksum"] == replayed["checksum"]
    assert after_restart["state"] == state
    # as of an earlier event: the execution still ran then, and that state is stable too
    assert partial["status"] == "RUNNING" and partial["as_of_event_id"] == middle
    assert partial["checksum"] != replayed["checksum"]
    assert partial_again["checksum"] == partial_after_restart["checksum"] == partial["checksum"]
    assert partial["checksum"] == checksum(fold([ev.Event.from_dict(e) for e in events[:middle]]))


# ---- 7. cancellation cascades to a child execution ---------------------------------------------------

CHILD = """
workflow:
  - step: start
    tool: {kind: shell, command: "GATED_COMMAND"}
"""

PARENT = """
workflow:
  - step: start
    tool: {kind: playbook, path: failures/lib/sleeper, input: {}}
    next: {arcs: [{step: end}]}
  - step: end
    tool: {kind: noop}
"""


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_cancelling_a_parent_cancels_its_child_and_stops_the_childs_command(
    database: str, tmp_path: Path, gates: Path
) -> None:
    pid_file, gate = gates / "child.pid", gates / "child.gate"
    child_text = CHILD.replace("GATED_COMMAND", gated(pid_file, gate, "echo never"))
    pid = 0
    try:
        with (
            running_cluster(database, tmp_path / "cluster", env=FAST_RECOVERY) as cluster,
            api_of(cluster) as api,
        ):
            api.register(playbook("failures/lib/sleeper", child_text))
            api.register(playbook("failures/parent", PARENT))
            parent_id = api.execute("failures/parent")
            wait_until(
                lambda: pid_file.exists() and pid_file.read_text().strip(), "the child's step to start"
            )
            pid = int(pid_file.read_text().split()[0])
            [child] = api.get("/api/executions", parent_execution_id=parent_id)["executions"]
            child_id = child["execution_id"]
            assert child["status"] == "RUNNING" and process_alive(pid)

            answer = api.post(f"/api/executions/{parent_id}/cancel", {"reason": "stopped by the test"})
            assert sorted(answer["cancelled"]) == sorted([parent_id, child_id])
            parent_status = api.finished(parent_id)
            child_status = api.finished(child_id)
            wait_until(lambda: not process_alive(pid), "the child's shell command to be stopped")
            child_events = api.events(child_id)
            parent_events = api.events(parent_id)
            child_queue = commands_of(database, child_id)
            parent_queue = commands_of(database, parent_id)
    finally:
        if pid and process_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)

    assert parent_status["status"] == "CANCELLED" and child_status["status"] == "CANCELLED"
    assert [c["status"] for c in child_queue] == ["cancelled"]
    assert [(c["step"], c["status"]) for c in parent_queue] == [("start", "cancelled")]
    assert child_events[-1]["event_type"] == ev.PLAYBOOK_CANCELLED
    assert parent_events[-1]["event_type"] == ev.PLAYBOOK_CANCELLED
    for log in (child_events, parent_events):
        kinds = [e["event_type"] for e in log]
        assert ev.COMMAND_COMPLETED not in kinds and ev.COMMAND_FAILED not in kinds


# ---- 8. a sub-playbook call that runs again attaches to the child it started ---------------------------

PARENT_OF_ONE = """
workflow:
  - step: start
    tool: {kind: playbook, path: failures/lib/once, input: {}}
    next: {arcs: [{step: end}]}
  - step: end
    tool: {kind: python, input: {child: "{{ start }}"}, code: "result = child"}
"""


def test_a_parent_command_that_runs_again_attaches_to_its_child_instead_of_starting_another(
    database: str, tmp_path: Path, gates: Path
) -> None:
    """The parent's call is parked while its child runs (no worker holds it); the worker running the
    child's step dies; the child's command runs again on the other worker, the child ends, and the
    parent's command runs again and attaches to that same child: one child execution, one result."""
    marker, gate = gates / "child.runs", gates / "child.gate"
    child_text = CHILD.replace("GATED_COMMAND", gated(marker, gate, "echo child-done"))
    with (
        running_cluster(database, tmp_path / "cluster", env=FAST_RECOVERY) as cluster,
        api_of(cluster) as api,
    ):
        api.register(playbook("failures/lib/once", child_text))
        api.register(playbook("failures/parent_once", PARENT_OF_ONE))
        parent_id = api.execute("failures/parent_once")
        wait_until(lambda: marker.exists() and marker.read_text().strip(), "the child's step to start")

        def parked() -> bool:
            found = rows(
                database,
                "SELECT status, worker_id, attempt FROM noetl.command"
                " WHERE execution_id = %s AND step = 'start'",
                int(parent_id),
            )
            return found == [("waiting", None, 0)]  # no worker, and the attempt it used given back

        wait_until(parked, "the parent's call to be parked")
        [(child_holder,)] = rows(
            database,
            "SELECT r.name FROM noetl.command c JOIN noetl.execution e ON e.execution_id = c.execution_id"
            " JOIN noetl.runtime r ON r.worker_id = c.worker_id"
            " WHERE e.parent_execution_id = %s AND c.status = 'leased'",
            int(parent_id),
        )
        assert cluster.worker(child_holder).kill() == -signal.SIGKILL
        gate.touch()
        status = api.finished(parent_id)
        children = api.get("/api/executions", parent_execution_id=parent_id)["executions"]
        events = api.events(parent_id)
        [(attempt,)] = rows(
            database,
            "SELECT attempt FROM noetl.command WHERE execution_id = %s AND step = 'start'",
            int(parent_id),
        )

    assert status["status"] == "COMPLETED", status
    assert len(children) == 1, children
    assert len(marker.read_text().split()) == 2  # the child's step ran again after the kill
    assert attempt == 1  # waiting cost no attempt: the parent's command ran (to its end) once more
    waits = [e for e in events if e["event_type"] == ev.CALL_WAITING]
    assert [w["data"]["wait"]["execution_id"] for w in waits] == [children[0]["execution_id"]]
    assert "child-done" in json.dumps(status["result"]), status["result"]
    assert children[0]["status"] == "COMPLETED"
    assert_log_is_clean(events)
