"""Benchmark of NoETL's distributed runtime (server + 2 workers on PostgreSQL), side by side with DBOS.

Usage::

    python bench/distributed.py [--runs 3] [--only W1,W2,W3,MEM] [--database-url URL] [--json]
                                [--concurrency 64] [--in-flight 256] [--poll-ms 10] [--no-dbos]
                                [--keep-logs DIR]
    python bench/distributed.py --report result.json   # the table of a saved --json report

Without ``--database-url`` it uses ``NOETL_TEST_DATABASE_URL``, else the machine's PostgreSQL at
``postgresql://postgres@127.0.0.1:5432/postgres``. Every workload gets fresh databases on that
server (one for NoETL, one for DBOS) that are dropped afterwards; durability is the server's
setting (``synchronous_commit`` is printed).

NoETL's side: ``noetl server start --port <free>`` and two ``noetl worker start --concurrency N``
processes, started as subprocesses per workload; playbooks (generated into
``bench/playbooks/d_*.yaml``) are registered with ``POST /api/catalog/register`` and executed with
``POST /api/execute``; completion is polled with ``GET /api/executions/{id}?include_events=false``
(a row read; ``/status`` folds the whole log on every call, too heavy to poll), and every sample is
checked once finished (status COMPLETED and the exact final result). Time runs from the execute
request to the first poll that sees the terminal status.

W1   a chain of 40 ``python`` steps adding 1 (and the same chain of ``noop`` steps): 10 executions
     per run; per-step time = execution time / 40. Also: where a step's time goes (BREAKDOWN),
     from the events' ``at`` and ``created_at`` and the tool calls' ``duration_ms``, over 3 extra
     executions.
W2   a parallel loop of 1,000 ``python`` items ``result = x * 2`` (and ``noop``): seconds.
W3   a parallel loop of 10,000 ``python`` items (and ``noop``) through the 2 workers: items/s.
MEM  a parallel loop of 100,000 ``noop`` items (``max_in_flight`` 256): RSS (VmRSS) of the server
     and of each worker sampled every second; start, peak, end, and how far each process's RSS
     rises above its half-way value while the loop runs (the 'flat' verdict: less than 10 MiB).

DBOS's side is ``bench/dbos_peer.py`` (equivalent workflows; see its docstring), run in its own
process per workload on its own fresh database of the same PostgreSQL. Ratios are "speed-up":
DBOS time / NoETL time, or NoETL items/s / DBOS items/s; above 1 NoETL is faster.

Exit code 0 when every target is met and every result is right, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

BENCH_DIR = Path(__file__).resolve().parent
PLAYBOOK_DIR = BENCH_DIR / "playbooks"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
CHAIN_LENGTH = 40
W1_EXECUTIONS = 10
W1_PROFILED = 3
LOOP_ITEMS = 1_000
QUEUE_ITEMS = 10_000
MEM_ITEMS = 100_000
MEM_IN_FLIGHT = 256
LEASE_SECONDS = 60.0
WORKER_ARGS: list[str] = []
"""Extra ``noetl worker start`` arguments (``--worker-arg``), e.g. ``--no-decide``."""
TARGETS = {"W1": 2.0, "W2": 500.0, "W3": 5000.0}
"""W1 ms per step (at most), W2 ms (at most), W3 items/s (at least)."""
TIMEOUTS = {"W1": 60.0, "W2": 180.0, "W3": 600.0, "MEM": 1500.0}
"""Seconds one execution may take before the sample counts as failed."""

JSONMap = dict[str, Any]


class WrongResult(Exception):
    """A run failed, timed out, or finished with the wrong status or final result."""


# --------------------------------------------------------------------------- playbooks


def _playbook(name: str, workflow: list[JSONMap]) -> JSONMap:
    meta = {"name": name, "path": f"bench/{name}"}
    return {"apiVersion": "noetl.io/v2", "kind": "Playbook", "metadata": meta, "workflow": workflow}


def add_one_task(k: int) -> JSONMap:
    previous = 0 if k == 1 else f"{{{{ step_{k - 1} }}}}"
    return {"kind": "python", "input": {"v": previous}, "code": "result = v + 1"}


def noop_task(k: int) -> JSONMap:
    return {"kind": "noop"}


def chain_playbook(name: str, task: Callable[[int], JSONMap]) -> JSONMap:
    steps = []
    for k in range(1, CHAIN_LENGTH + 1):
        step: JSONMap = {"step": f"step_{k}", "tool": task(k)}
        if k < CHAIN_LENGTH:
            step["next"] = {"arcs": [{"step": f"step_{k + 1}"}]}
        steps.append(step)
    return _playbook(name, steps)


def loop_playbook(name: str, items: int, in_flight: int, python: bool) -> JSONMap:
    """One parallel loop step; its result is ``{results: [...], stats: {...}}`` (checked)."""
    tool: JSONMap = {"kind": "noop"}
    if python:
        tool = {"kind": "python", "input": {"x": "{{ iter.x }}"}, "code": "result = x * 2"}
    spec = {"mode": "parallel", "max_in_flight": in_flight}
    loop = {"in": items, "iterator": "x", "spec": spec}
    return _playbook(name, [{"step": "work", "loop": loop, "tool": tool}])


def playbooks(in_flight: int) -> dict[str, JSONMap]:
    return {
        "d_w1": chain_playbook("d_w1", add_one_task),
        "d_w1_noop": chain_playbook("d_w1_noop", noop_task),
        "d_w2": loop_playbook("d_w2", LOOP_ITEMS, in_flight, python=True),
        "d_w2_noop": loop_playbook("d_w2_noop", LOOP_ITEMS, in_flight, python=False),
        "d_w3": loop_playbook("d_w3", QUEUE_ITEMS, in_flight, python=True),
        "d_w3_noop": loop_playbook("d_w3_noop", QUEUE_ITEMS, in_flight, python=False),
        "d_mem": loop_playbook("d_mem", MEM_ITEMS, MEM_IN_FLIGHT, python=False),
    }


def write_playbooks(in_flight: int) -> dict[str, str]:
    """(Re)write bench/playbooks/d_*.yaml; return name -> YAML text as registered."""
    import yaml

    PLAYBOOK_DIR.mkdir(exist_ok=True)
    texts = {}
    for name, body in playbooks(in_flight).items():
        text = "# Generated by bench/distributed.py; edit the generator, not this file.\n" + yaml.safe_dump(
            body, sort_keys=False, width=110, default_flow_style=None
        )
        path = PLAYBOOK_DIR / f"{name}.yaml"
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        texts[name] = text
    return texts


def expected_loop(items: int, python: bool) -> Callable[[Any], bool]:
    def check(result: Any) -> bool:
        if not isinstance(result, dict) or not isinstance(result.get("results"), list):
            return False
        stats = result.get("stats") or {}
        if stats.get("succeeded") != items or len(result["results"]) != items:
            return False
        return not python or result["results"] == [2 * x for x in range(items)]

    return check


# --------------------------------------------------------------------------- databases


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@contextmanager
def scratch_database(base_url: str, tag: str) -> Iterator[str]:
    """A fresh database on the server of ``base_url``, dropped (with its sessions) on exit."""
    import psycopg

    name = f"bench_{tag}_{secrets.token_hex(4)}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(base_url, name)
    finally:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_settings(base_url: str) -> JSONMap:
    import psycopg

    with psycopg.connect(base_url) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        sync = conn.execute("SHOW synchronous_commit").fetchone()
    return {"postgres": version[0] if version else None, "synchronous_commit": sync[0] if sync else None}


# --------------------------------------------------------------------------- the NoETL cluster


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: IO[bytes]
    log_path: Path

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Cluster:
    url: str
    server: Process
    workers: list[Process]
    http: Any  # httpx.Client

    @property
    def processes(self) -> list[Process]:
        return [self.server, *self.workers]


def spawn(name: str, args: list[str], env: dict[str, str], logs: Path) -> Process:
    log_path = logs / f"{name}.log"
    log = log_path.open("wb")
    command = [sys.executable, "-m", "noetl", *args]
    popen = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=logs)
    return Process(name, popen, log, log_path)


def wait_until(check: Callable[[], Any], what: str, timeout: float, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise WrongResult(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


@contextmanager
def running_cluster(
    database_url: str, logs: Path, concurrency: int, extra_env: dict[str, str] | None = None
) -> Iterator[Cluster]:
    """``noetl server start`` and 2 ``noetl worker start`` processes; all stopped on exit.

    The server wants its service token from every caller (loopback too): the benchmark sets one and
    sends it. ``extra_env`` adds settings for every process (e.g. telemetry sinks)."""
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    token = secrets.token_urlsafe(24)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOETL_")}
    env.update(
        NOETL_DATABASE_URL=database_url,
        NOETL_DATA_DIR=str(logs / "data"),
        NOETL_SERVER_URL=url,
        NOETL_SERVICE_TOKEN=token,
    )
    env.update(extra_env or {})
    logs.mkdir(parents=True, exist_ok=True)
    processes: list[Process] = []
    http = httpx.Client(base_url=url, timeout=60.0, headers={"Authorization": f"Bearer {token}"})
    try:
        server = spawn(
            "server", ["server", "start", "--port", str(port), "--log-level", "warning"], env, logs
        )
        processes.append(server)
        wait_until(lambda: _healthy(http, server), "the server's /health", 60)
        token = logs / "data" / "service.token"  # the server requires its token, loopback clients too
        if token.exists():
            http.headers["Authorization"] = f"Bearer {token.read_text().strip()}"
        workers = []
        for n in (1, 2):
            args = ["worker", "start", "--concurrency", str(concurrency), "--grace", "2"]
            args += ["--lease", str(LEASE_SECONDS), "--name", f"bench-w{n}", *WORKER_ARGS]
            workers.append(spawn(f"worker{n}", args, env, logs))
        processes.extend(workers)
        wait_until(lambda: _workers_registered(http, workers) >= 2, "2 registered workers", 60)
        yield Cluster(url, server, workers, http)
    finally:
        http.close()
        for process in processes:
            if process.popen.poll() is None:
                process.popen.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()
            process.log.close()


def _healthy(http: Any, server: Process) -> bool:
    import httpx

    if server.popen.poll() is not None:
        raise WrongResult(f"the server exited with {server.popen.returncode}:\n{server.tail()}")
    try:
        return bool(http.get("/health", timeout=1.0).status_code == 200)
    except httpx.TransportError:
        return False


def _workers_registered(http: Any, workers: list[Process]) -> int:
    for worker in workers:
        if worker.popen.poll() is not None:
            raise WrongResult(f"{worker.name} exited with {worker.popen.returncode}:\n{worker.tail()}")
    body = http.get("/api/worker/pools").json()
    listed = body.get("workers", body) if isinstance(body, dict) else body
    return len(listed)


def register(cluster: Cluster, text: str) -> str:
    response = cluster.http.post("/api/catalog/register", json={"content": text})
    if response.status_code != 200:
        raise WrongResult(f"register failed ({response.status_code}): {response.text[:300]}")
    return str(response.json()["catalog_id"])


@dataclass
class Execution:
    execution_id: str
    seconds: float
    status: str
    result: Any


def execute(cluster: Cluster, catalog_id: str, timeout: float, poll: float) -> Execution:
    """Execute and poll until terminal; the time from the execute request to the terminal poll."""
    http = cluster.http
    start = time.perf_counter()
    response = http.post("/api/execute", json={"catalog_id": catalog_id})
    if response.status_code != 200:
        raise WrongResult(f"execute failed ({response.status_code}): {response.text[:300]}")
    execution_id = str(response.json()["execution_id"])
    deadline = start + timeout
    path = f"/api/executions/{execution_id}"
    while True:
        detail = http.get(path, params={"include_events": "false"}).json()
        if detail["status"] != "RUNNING":
            seconds = time.perf_counter() - start
            return Execution(execution_id, seconds, detail["status"], detail.get("result"))
        if time.perf_counter() > deadline:
            _cancel(http, execution_id)
            raise WrongResult(f"execution {execution_id} still RUNNING after {timeout:g} s")
        for process in cluster.processes:
            if process.popen.poll() is not None:
                raise WrongResult(f"{process.name} exited during the run:\n{process.tail()}")
        time.sleep(poll)


def _cancel(http: Any, execution_id: str) -> None:
    with contextlib.suppress(Exception):  # the run has failed anyway; cancelling only spares the workers
        http.post(f"/api/executions/{execution_id}/cancel", json={"reason": "bench timeout"})


def checked(run: Execution, ok: Callable[[Any], bool], what: str) -> Execution:
    if run.status != "COMPLETED" or not ok(run.result):
        shown = json.dumps(run.result)[:200] if run.result is not None else "null"
        raise WrongResult(f"{what}: execution {run.execution_id} ended {run.status} with result {shown}")
    return run


# --------------------------------------------------------------------------- results


@dataclass
class Metric:
    """One measured quantity: samples, unit, the target and whether lower is better."""

    name: str
    samples: list[float]
    unit: str
    target: float | None = None
    higher_is_better: bool = False
    dbos: list[float] | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def passed(self) -> bool | None:
        if self.target is None:
            return None
        return self.median >= self.target if self.higher_is_better else self.median <= self.target

    @property
    def speedup(self) -> float | None:
        """>1 means NoETL is faster than DBOS on this metric."""
        if not self.dbos or not self.samples or self.median == 0:
            return None
        theirs = statistics.median(self.dbos)
        return self.median / theirs if self.higher_is_better else theirs / self.median

    def to_json(self) -> JSONMap:
        out: JSONMap = {
            "name": self.name,
            "unit": self.unit,
            "median": round(self.median, 4),
            "min": round(min(self.samples), 4),
            "max": round(max(self.samples), 4),
            "samples": [round(s, 4) for s in self.samples],
            "target": self.target,
            "passed": self.passed,
        }
        if self.dbos:
            out["dbos_median"] = round(statistics.median(self.dbos), 4)
            out["dbos_samples"] = [round(s, 4) for s in self.dbos]
            out["speedup_vs_dbos"] = round(self.speedup or 0.0, 3)
        return out


@dataclass
class WorkloadResult:
    name: str
    title: str
    metrics: list[Metric] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    extra: JSONMap = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.errors and all(m.passed is not False for m in self.metrics)

    def to_json(self) -> JSONMap:
        return {
            "title": self.title,
            "errors": self.errors,
            "passed": self.passed,
            "metrics": [m.to_json() for m in self.metrics],
            "notes": self.notes,
            **self.extra,
        }


# --------------------------------------------------------------------------- DBOS


def run_dbos(workload: str, base_url: str, runs: int) -> JSONMap:
    """``bench/dbos_peer.py WORKLOAD`` on a fresh database; its samples, or {"error": ...}."""
    with scratch_database(base_url, f"dbos_{workload.lower()}") as url:
        command = [sys.executable, str(BENCH_DIR / "dbos_peer.py"), workload]
        command += ["--database-url", url, "--runs", str(runs), "--json"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=1200, check=False)
        except subprocess.TimeoutExpired:
            return {"error": "dbos_peer timed out after 1200 s"}
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return {"error": lines[-1] if lines else f"dbos_peer exited {done.returncode}"}
    report: JSONMap = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def dbos_available() -> str | None:
    """DBOS's version, or None when ``import dbos`` fails in this interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", "from importlib.metadata import version; import dbos; print(version('dbos'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else None


# --------------------------------------------------------------------------- W1


def bench_w1(ctx: BenchContext) -> WorkloadResult:
    result = WorkloadResult("W1", f"chain of {CHAIN_LENGTH} sequential steps, {W1_EXECUTIONS} executions/run")
    python_ms: list[float] = []
    noop_ms: list[float] = []
    breakdown: list[dict[str, float]] = []
    with ctx.cluster("w1") as (cluster, database_url):
        python_id = register(cluster, ctx.texts["d_w1"])
        noop_id = register(cluster, ctx.texts["d_w1_noop"])
        chain_ok = (lambda r: r == CHAIN_LENGTH), (lambda r: r == {} or r is None)
        for catalog_id, ok in ((python_id, chain_ok[0]), (noop_id, chain_ok[1])):
            checked(execute(cluster, catalog_id, TIMEOUTS["W1"], ctx.poll), ok, "W1 warm-up")
        for _ in range(ctx.runs):
            for _ in range(W1_EXECUTIONS):
                run = checked(execute(cluster, python_id, TIMEOUTS["W1"], ctx.poll), chain_ok[0], "W1 python")
                python_ms.append(run.seconds * 1000)
            for _ in range(W1_EXECUTIONS):
                run = checked(execute(cluster, noop_id, TIMEOUTS["W1"], ctx.poll), chain_ok[1], "W1 noop")
                noop_ms.append(run.seconds * 1000)
        profiled = [
            checked(execute(cluster, python_id, TIMEOUTS["W1"], ctx.poll), chain_ok[0], "W1 profile")
            for _ in range(W1_PROFILED)
        ]
        for run in profiled:
            breakdown.extend(step_breakdown(database_url, run))
    per_step = [ms / CHAIN_LENGTH for ms in python_ms]
    dbos = ctx.dbos("W1")
    dbos_steps = [ms / CHAIN_LENGTH for ms in dbos.get("samples", {}).get("execution_ms", [])]
    result.metrics = [
        Metric("per step, python chain", per_step, "ms", TARGETS["W1"], dbos=dbos_steps or None),
        Metric("per step, noop chain", [ms / CHAIN_LENGTH for ms in noop_ms], "ms"),
        Metric(
            "execution, python chain (40 steps)",
            python_ms,
            "ms",
            dbos=dbos.get("samples", {}).get("execution_ms"),
        ),
    ]
    if "error" in dbos:
        result.errors.append(f"DBOS W1: {dbos['error']}")
    result.extra["breakdown"] = summarise_breakdown(breakdown)
    return result


BREAKDOWN = (
    ("tool_call", "the tool call itself (call.done duration_ms: python pool round trip)"),
    ("to_pass", "call.done -> the recording transaction starts: reporter wakes, BEGIN"),
    (
        "decide",
        "transaction start -> next command.issued: report + lock + read (one statement), fold, decide",
    ),
    (
        "write_to_run",
        "command.issued -> next tool call starts: write (one statement), COMMIT, task start, render",
    ),
)
"""Segments of one W1 hop on the worker's fast path (the worker that reports decides and runs the
next command itself), from the events alone: ``at`` (the worker's clock), ``created_at`` (the start
of the transaction that wrote the event) and ``call.done``'s ``duration_ms``."""


def step_breakdown(database_url: str, run: Execution) -> list[dict[str, float]]:
    """Per hop k -> k+1 of one chain execution: the segments of BREAKDOWN, in ms."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        events = conn.execute(
            "SELECT event_type, command_id, at, extract(epoch FROM created_at)::float8, "
            "(data->>'duration_ms')::float8 / 1000 FROM noetl.event "
            "WHERE execution_id = %s ORDER BY event_id",
            (int(run.execution_id),),
        ).fetchall()
    issued: dict[str, float] = {}  # command -> command.issued at
    done: dict[str, tuple[float, float, float]] = {}  # command -> (call.done at, recording tx start, tool s)
    order: list[str] = []
    for event_type, command_id, at, written, duration in events:
        if event_type == "command.issued":
            issued[command_id] = at
            order.append(command_id)
        elif event_type in ("call.done", "call.error"):
            done[command_id] = (at, written, duration or 0.0)
    hops = []
    for this, following in itertools.pairwise(order):
        if this not in done or following not in done:
            continue
        done_at, recording, tool = done[this]
        next_done, _, next_tool = done[following]
        hop = {
            "tool_call": tool,
            "to_pass": recording - done_at,
            "decide": issued[following] - recording,
            "write_to_run": (next_done - next_tool) - issued[following],
            "total": issued[following] - issued[this],
        }
        hops.append({k: v * 1000 for k, v in hop.items()})
    return hops


def summarise_breakdown(hops: list[dict[str, float]]) -> JSONMap:
    summary: JSONMap = {"hops": len(hops), "segments_ms": {}}
    for key, _ in (*BREAKDOWN, ("total", "")):
        values = [h[key] for h in hops if key in h]
        if values:
            summary["segments_ms"][key] = {
                "median": round(statistics.median(values), 3),
                "p90": round(sorted(values)[int(0.9 * (len(values) - 1))], 3),
                "n": len(values),
            }
    return summary


# --------------------------------------------------------------------------- W2, W3


def bench_loop(ctx: BenchContext, workload: str) -> WorkloadResult:
    items = LOOP_ITEMS if workload == "W2" else QUEUE_ITEMS
    title = f"parallel loop of {items:,} trivial items (max_in_flight {ctx.in_flight}), 2 workers"
    result = WorkloadResult(workload, title)
    name = "d_w2" if workload == "W2" else "d_w3"
    seconds: dict[str, list[float]] = {"python": [], "noop": []}
    with ctx.cluster(workload.lower()) as (cluster, _):
        ids = {
            "python": register(cluster, ctx.texts[name]),
            "noop": register(cluster, ctx.texts[f"{name}_noop"]),
        }
        warm = register(cluster, ctx.texts["d_w2"])
        checked(execute(cluster, warm, TIMEOUTS["W2"], 0.01), expected_loop(LOOP_ITEMS, True), "warm-up")
        for _ in range(ctx.runs):
            for kind, catalog_id in ids.items():
                ok = expected_loop(items, kind == "python")
                run = checked(
                    execute(cluster, catalog_id, TIMEOUTS[workload], ctx.poll), ok, f"{workload} {kind}"
                )
                seconds[kind].append(run.seconds)
    dbos = ctx.dbos(workload)
    dbos_samples = dbos.get("samples", {})
    if "error" in dbos:
        result.errors.append(f"DBOS {workload}: {dbos['error']}")
    if workload == "W2":
        result.metrics = [
            Metric(
                "python items, wall",
                [s * 1000 for s in seconds["python"]],
                "ms",
                TARGETS["W2"],
                dbos=dbos_samples.get("execution_ms"),
            ),
            Metric("noop items, wall", [s * 1000 for s in seconds["noop"]], "ms"),
        ]
    else:
        result.metrics = [
            Metric(
                "python items",
                [items / s for s in seconds["python"]],
                "items/s",
                TARGETS["W3"],
                higher_is_better=True,
                dbos=dbos_samples.get("items_per_s"),
            ),
            Metric(
                "noop items",
                [items / s for s in seconds["noop"]],
                "items/s",
                higher_is_better=True,
                dbos=dbos_samples.get("items_per_s"),
            ),
        ]
        if dbos_samples.get("drain_items_per_s"):
            result.metrics.append(
                Metric(
                    "DBOS queue alone (pre-filled), for scale",
                    dbos_samples["drain_items_per_s"],
                    "items/s",
                    higher_is_better=True,
                )
            )
            result.notes.append(
                "DBOS end-to-end includes enqueueing 10,000 workflows from one client "
                f"(median {statistics.median(dbos_samples['enqueue_ms']) / 1000:.1f} s); the last row is "
                "DBOS's 2 workers draining 10,000 jobs made ready at once."
            )
    return result


# --------------------------------------------------------------------------- MEM


def rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def bench_mem(ctx: BenchContext) -> WorkloadResult:
    result = WorkloadResult(
        "MEM", f"parallel loop of {MEM_ITEMS:,} noop items (max_in_flight {MEM_IN_FLIGHT})"
    )
    samples: list[tuple[float, dict[str, int | None]]] = []
    with ctx.cluster("mem") as (cluster, _):
        catalog_id = register(cluster, ctx.texts["d_mem"])
        warm = register(cluster, ctx.texts["d_w2_noop"])
        checked(execute(cluster, warm, TIMEOUTS["W2"], 0.01), expected_loop(LOOP_ITEMS, False), "warm-up")
        pids = {p.name: p.popen.pid for p in cluster.processes}
        stop = threading.Event()

        def sample() -> None:
            start = time.monotonic()
            while True:
                samples.append((time.monotonic() - start, {n: rss_kib(pid) for n, pid in pids.items()}))
                if stop.wait(1.0):
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            run = checked(
                execute(cluster, catalog_id, TIMEOUTS["MEM"], 0.5), expected_loop(MEM_ITEMS, False), "MEM"
            )
        finally:
            stop.set()
            sampler.join()
        samples.append((samples[-1][0] + 0.001, {n: rss_kib(pid) for n, pid in pids.items()}))
    mib = 1024.0
    memory: JSONMap = {"seconds": round(run.seconds, 1), "items_per_s": round(MEM_ITEMS / run.seconds, 1)}
    for name in pids:
        series = [(t, kib) for t, values in samples if (kib := values[name]) is not None]
        # the verdict looks at the loop while it runs: the last samples follow the final poll, whose
        # answer holds the 100,000 results (the API hydrates them), a one-off of the read, not growth
        running = series[:-2] if len(series) > 4 else series
        half = [v for t, v in running if t >= running[-1][0] / 2]
        memory[name] = {
            "start_mib": round(series[0][1] / mib, 1),
            "peak_mib": round(max(v for _, v in series) / mib, 1),
            "end_mib": round(series[-1][1] / mib, 1),
            "second_half_growth_mib": round((max(half) - half[0]) / mib, 1) if half else None,
            "series_kib": [[round(t, 1), kib] for t, kib in series],
            "deciles_mib": [
                round(series[min(len(series) - 1, i * len(series) // 10)][1] / mib, 1) for i in range(11)
            ],
        }
    result.extra["memory"] = memory
    growth = max(memory[name]["second_half_growth_mib"] or 0.0 for name in pids)
    result.metrics = [
        Metric("items/s", [MEM_ITEMS / run.seconds], "items/s", higher_is_better=True),
        Metric("largest RSS rise within the second half", [growth], "MiB", target=10.0),
    ]
    result.notes.append(
        "flat = no process (server, workers) peaks 10 MiB or more above its RSS at the loop's half-way"
        " point while the loop runs"
    )
    return result


# --------------------------------------------------------------------------- driver


@dataclass
class BenchContext:
    base_url: str
    runs: int
    concurrency: int
    in_flight: int
    texts: dict[str, str]
    logs: Path
    use_dbos: bool
    poll: float
    """Seconds between status polls (W1-W3): each poll also costs the server's event loop time."""

    @contextmanager
    def cluster(self, tag: str) -> Iterator[tuple[Cluster, str]]:
        with (
            scratch_database(self.base_url, f"noetl_{tag}") as url,
            running_cluster(url, self.logs / tag, self.concurrency) as cluster,
        ):
            yield cluster, url

    def dbos(self, workload: str) -> JSONMap:
        if not self.use_dbos:
            return {}
        return run_dbos(workload, self.base_url, self.runs)


WORKLOADS: dict[str, Callable[[BenchContext], WorkloadResult]] = {
    "W1": bench_w1,
    "W2": lambda ctx: bench_loop(ctx, "W2"),
    "W3": lambda ctx: bench_loop(ctx, "W3"),
    "MEM": bench_mem,
}


def run_workload(name: str, ctx: BenchContext) -> WorkloadResult:
    try:
        return WORKLOADS[name](ctx)
    except WrongResult as exc:
        failed = WorkloadResult(name, "failed")
        failed.errors.append(str(exc))
        return failed


def machine() -> JSONMap:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "load_average_1min_before": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


def print_report(results: list[WorkloadResult], info: JSONMap) -> None:
    print(
        f"NoETL distributed runtime vs DBOS {info.get('dbos') or '(not run)'}: medians of {info['runs']} runs"
    )
    print(
        f"machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}; PostgreSQL "
        f"{info['postgres']}, synchronous_commit={info['synchronous_commit']}; "
        f"load average before: {info['load_average_1min_before']}"
    )
    header = (
        f"{'':4}{'metric':<44}{'median':>11}{'unit':>9}{'target':>10}{'DBOS':>11}{'speed-up':>10}  verdict"
    )
    print()
    print(header)
    print("-" * len(header))
    for result in results:
        print(f"{result.name}  {result.title}")
        for error in result.errors:
            print(f"{'':4}ERROR: {error}")
        for m in result.metrics:
            target = "" if m.target is None else ((">=" if m.higher_is_better else "<=") + f"{m.target:g}")
            verdict = "" if m.passed is None else ("PASS" if m.passed else "MISS")
            theirs = f"{statistics.median(m.dbos):.3f}" if m.dbos else ""
            speedup = f"{m.speedup:.2f}x" if m.speedup is not None else ""
            row = f"{'':4}{m.name:<44}{m.median:>11.3f}{m.unit:>9}{target:>10}"
            print(f"{row}{theirs:>11}{speedup:>10}  {verdict}")
        for note in result.notes:
            print(f"{'':4}note: {note}")
        if "breakdown" in result.extra:
            print_breakdown(result.extra["breakdown"])
        if "memory" in result.extra:
            print_memory(result.extra["memory"])
    print()
    print("speed-up: DBOS time / NoETL time, or NoETL items/s / DBOS items/s (above 1: NoETL faster)")
    print("all targets met" if all(r.passed for r in results) else "some targets MISSED or runs FAILED")


def print_breakdown(summary: JSONMap) -> None:
    print(f"{'':4}where a W1 step goes ({summary['hops']} hops of {W1_PROFILED} profiled executions), ms:")
    segments = summary["segments_ms"]
    for key, meaning in (*BREAKDOWN, ("total", "command.issued -> next command.issued (one hop)")):
        if key in segments:
            s = segments[key]
            print(f"{'':6}{key:<16}{s['median']:>8.3f} (p90 {s['p90']:.3f})  {meaning}")


def print_memory(memory: JSONMap) -> None:
    print(f"{'':4}{memory['seconds']} s, {memory['items_per_s']} items/s; RSS in MiB:")
    for name, m in memory.items():
        if isinstance(m, dict):
            print(
                f"{'':6}{name:<9} start {m['start_mib']:>7}  peak {m['peak_mib']:>7}  end {m['end_mib']:>7}"
                f"  second-half growth {m['second_half_growth_mib']}"
            )
            print(f"{'':16}by tenths of the run: {' '.join(str(v) for v in m['deciles_mib'])}")


def results_from_json(report: JSONMap) -> list[WorkloadResult]:
    """The results of a ``--json`` report, to print its table again (``--report FILE``)."""
    results = []
    for name, body in report["workloads"].items():
        result = WorkloadResult(
            name, body["title"], notes=body.get("notes", []), errors=body.get("errors", [])
        )
        for key in ("breakdown", "memory"):
            if key in body:
                result.extra[key] = body[key]
        for m in body["metrics"]:
            higher = m["unit"] == "items/s"
            result.metrics.append(
                Metric(m["name"], m["samples"], m["unit"], m["target"], higher, m.get("dbos_samples"))
            )
        results.append(result)
    return results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3, help="timed runs per measurement (default 3)")
    parser.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated: W1,W2,W3,MEM")
    parser.add_argument(
        "--database-url", help="PostgreSQL server to use (a scratch database is made per workload)"
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    parser.add_argument(
        "--concurrency", type=int, default=64, help="each worker's --concurrency (default 64)"
    )
    parser.add_argument("--in-flight", type=int, default=256, help="W2/W3 loop max_in_flight (default 256)")
    parser.add_argument(
        "--poll-ms", type=float, default=10.0, help="status poll interval for W1-W3 (default 10 ms)"
    )
    parser.add_argument("--no-dbos", action="store_true", help="skip the DBOS side")
    parser.add_argument(
        "--worker-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for every `noetl worker start` (repeatable), e.g. --worker-arg=--no-decide",
    )
    parser.add_argument("--report", metavar="FILE", help="print the table of a saved --json report and exit")
    parser.add_argument("--keep-logs", help="write the processes' logs under this directory and keep them")
    args = parser.parse_args(argv)
    args.only = [name.strip().upper() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in args.only if name not in WORKLOADS]
    if unknown or args.runs < 1:
        parser.error(f"unknown workload {unknown}" if unknown else "--runs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    WORKER_ARGS[:] = args.worker_arg
    if args.report:
        report = json.loads(Path(args.report).read_text())
        results = results_from_json(report)
        print_report(results, report)
        return 0 if all(r.passed for r in results) else 1
    base_url = args.database_url or os.environ.get("NOETL_TEST_DATABASE_URL") or DEFAULT_DATABASE_URL
    texts = write_playbooks(args.in_flight)
    info = {**machine(), **server_settings(base_url), "runs": args.runs, "date": time.strftime("%Y-%m-%d")}
    use_dbos = not args.no_dbos
    if use_dbos:
        info["dbos"] = dbos_available()
        if info["dbos"] is None:
            print("warning: DBOS is not installed (pip install dbos); its side is skipped", file=sys.stderr)
            use_dbos = False
    with tempfile.TemporaryDirectory(prefix="noetl-bench-") as scratch:
        logs = Path(args.keep_logs) if args.keep_logs else Path(scratch)
        ctx = BenchContext(
            base_url, args.runs, args.concurrency, args.in_flight, texts, logs, use_dbos, args.poll_ms / 1000
        )
        results = []
        for name in args.only:
            results.append(run_workload(name, ctx))
            if not args.json:
                print(f"[{name} done]", file=sys.stderr)
    if args.json:
        print(json.dumps({**info, "workloads": {r.name: r.to_json() for r in results}}, indent=2))
    else:
        print_report(results, info)
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
