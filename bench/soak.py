"""A small, bounded soak of the distributed runtime: sub-playbooks under load, a worker killed midway.

Usage::

    python bench/soak.py [--seconds 90] [--in-flight 60] [--workers 3] [--slots 8]
                         [--kill-at 30] [--database-url URL] [--json] [--keep-logs DIR]
    python bench/soak.py --sizes 40000 [--database-url URL]   # command/event table sizes only

It starts ``noetl server start`` and ``--workers`` ``noetl worker start --concurrency --slots``
processes on a fresh database of the PostgreSQL server (dropped afterwards), with the product's
default lease and reaper settings, and keeps about ``--in-flight`` executions running for
``--seconds`` seconds, drawn in turn from this mix:

* ``parent``: a parallel loop (``max_in_flight`` 5) over 6 items, each calling the ``child``
  playbook (two steps), then a step summing the children's results;
* ``chain``: 5 python steps adding 1;
* ``retry``: a sub-playbook call whose child fails on the call's first attempt, retried by the
  task's policy (the second child succeeds);
* ``failing``: a python step that raises (the execution must end FAILED).

At ``--kill-at`` seconds the worker holding the most leases is SIGKILLed and a new worker started
in its place. Recovery time: from the kill until none of the commands the dead worker held is still
leased to it (each was re-issued to a live worker, or finished). After the last submission the run
waits (bounded) for every execution to end, then checks each one (status and exact result), and
reports: accepted / completed / failed (expected and unexpected), wrong results, duplicates
(a command recorded twice, a call that started two children), the recovery time, the queue by
status at the end, and the sizes of the ``command`` and ``event`` tables.

``--sizes N`` runs one execution whose parallel loop has N ``noop`` items (N commands, each with a
context that carries a 1 KB workload value) and prints the table sizes: the compaction of finished
command rows is measured with it (run it on two versions of the code to compare).

Exit code 0 when nothing was wrong (no wrong result, no duplicate, nothing left running).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")
ITEMS = [1, 2, 3, 4, 5, 6]

CHILD = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: child, path: soak/child}
workload: {n: 0, fail_below: 0, attempt: 1}
workflow:
  - step: start
    tool:
      kind: python
      input: {n: "{{ n }}", attempt: "{{ attempt }}", fail_below: "{{ fail_below }}"}
      code: |
        if attempt < fail_below:
            raise RuntimeError(f"child fails on attempt {attempt}")
        result = {'square': n * n}
    next: {arcs: [{step: end}]}
  - step: end
    tool: {kind: noop}
executor: {spec: {final_step: start}}
"""

PARENT = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: parent, path: soak/parent}
workload: {base: 0, items: ITEMS}
workflow:
  - step: start
    loop: {in: "{{ items }}", iterator: item, spec: {mode: parallel, max_in_flight: 5}}
    tool: {kind: playbook, path: soak/child, input: {n: "{{ base + iter.item }}"}}
    next: {arcs: [{step: total}]}
  - step: total
    tool: {kind: python, input: {rs: "{{ start.results }}"}, code: "result = sum(r['square'] for r in rs)"}
""".replace("ITEMS", json.dumps(ITEMS))

CHAIN = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: chain, path: soak/chain}
workload: {base: 0}
workflow:
  - step: s1
    tool: {kind: python, input: {v: "{{ base }}"}, code: "result = v + 1"}
    next: {arcs: [{step: s2}]}
  - step: s2
    tool: {kind: python, input: {v: "{{ s1 }}"}, code: "result = v + 1"}
    next: {arcs: [{step: s3}]}
  - step: s3
    tool: {kind: python, input: {v: "{{ s2 }}"}, code: "result = v + 1"}
    next: {arcs: [{step: s4}]}
  - step: s4
    tool: {kind: python, input: {v: "{{ s3 }}"}, code: "result = v + 1"}
    next: {arcs: [{step: s5}]}
  - step: s5
    tool: {kind: python, input: {v: "{{ s4 }}"}, code: "result = v + 1"}
"""

RETRY = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: retry, path: soak/retry}
workload: {base: 0}
workflow:
  - step: start
    tool:
      kind: playbook
      path: soak/child
      input: {n: "{{ base }}", attempt: "{{ _attempt }}", fail_below: 2}
      spec:
        policy:
          rules:
            - when: "{{ output.status == 'error' }}"
              then: {do: retry, attempts: 3, delay: 0.1}
"""

FAILING = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: failing, path: soak/failing}
workload: {base: 0}
workflow:
  - step: start
    tool: {kind: python, input: {b: "{{ base }}"}, code: "raise ValueError(f'failing on purpose {b}')"}
"""

SIZES = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: sizes, path: soak/sizes}
workload: {count: 0, blob: BLOB}
workflow:
  - step: start
    loop: {in: "{{ count }}", iterator: i, spec: {mode: parallel, max_in_flight: 64}}
    tool: {kind: noop}
"""

KINDS = ("parent", "chain", "parent", "retry", "parent", "failing")


def expected(kind: str, base: int) -> tuple[str, Any]:
    """The status and final result an execution of ``kind`` with ``base`` must end with."""
    if kind == "parent":
        return "COMPLETED", sum((base + i) ** 2 for i in ITEMS)
    if kind == "chain":
        return "COMPLETED", base + 5
    if kind == "retry":
        return "COMPLETED", {"square": base * base}
    return "FAILED", None


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: IO[bytes]


@dataclass
class Cluster:
    url: str
    database_url: str
    env: dict[str, str]
    logs: Path
    procs: list[Proc] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        """The service token the server created (it wants it from loopback clients too)."""
        path = self.logs / "data" / "service.token"
        token = path.read_text().strip() if path.exists() else ""  # older servers made none
        return {"Authorization": f"Bearer {token}"} if token else {}

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, headers=self.headers)

    def spawn(self, name: str, args: list[str]) -> Proc:
        log = (self.logs / f"{name}.log").open("wb")
        popen = subprocess.Popen(
            [sys.executable, "-m", "noetl", *args], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def worker(self, name: str, slots: int) -> Proc:
        return self.spawn(
            name, ["worker", "start", "--concurrency", str(slots), "--grace", "1", "--name", name]
        )

    def stop(self) -> None:
        for proc in self.procs:
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()
            proc.log.close()


def wait_for(check: Any, what: str, seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {seconds:g} s waiting for {what}")
        time.sleep(0.1)


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    name = f"soak_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(server_url)
    try:
        yield urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def cluster_of(database_url: str, workers: int, slots: int, logs: Path) -> Iterator[Cluster]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOETL_")}
    env.update(
        NOETL_DATABASE_URL=database_url,
        NOETL_DATA_DIR=str(logs / "data"),
        NOETL_LOG_LEVEL="warning",
        NOETL_SERVER_URL=url,
    )
    cluster = Cluster(url, database_url, env, logs)
    try:
        cluster.spawn("server", ["server", "start", "--port", str(port)])
        wait_for(lambda: _healthy(url), "the server", 60)
        for n in range(1, workers + 1):
            cluster.worker(f"w{n}", slots)
        wait_for(lambda: _workers(url, cluster.headers) >= workers, f"{workers} workers", 60)
        yield cluster
    finally:
        cluster.stop()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _workers(url: str, headers: dict[str, str]) -> int:
    try:
        body = httpx.get(f"{url}/api/worker/pools", timeout=2, headers=headers).json()
    except (httpx.TransportError, ValueError):
        return 0
    return len(body.get("workers", body) if isinstance(body, dict) else body)


def query(database_url: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def sizes(database_url: str) -> dict[str, Any]:
    """Rows and on-disk sizes (with indexes and TOAST) of the command and event tables, the bytes of
    the live command rows, and how much of them is context and outcome."""
    [(commands, command_bytes, event_bytes, row_bytes, context_bytes, outcome_bytes, events)] = query(
        database_url,
        "SELECT (SELECT count(*) FROM noetl.command), pg_total_relation_size('noetl.command'),"
        " pg_total_relation_size('noetl.event'),"
        " (SELECT coalesce(sum(pg_column_size(c.*)), 0) FROM noetl.command AS c),"
        " (SELECT coalesce(sum(pg_column_size(context)), 0) FROM noetl.command),"
        " (SELECT coalesce(sum(pg_column_size(outcome)), 0) FROM noetl.command),"
        " (SELECT count(*) FROM noetl.event)",
    )
    mb = 2**20
    return {
        "commands": commands,
        "events": events,
        "command_table_mb": round(command_bytes / mb, 2),
        "event_table_mb": round(event_bytes / mb, 2),
        "command_rows_mb": round(row_bytes / mb, 2),
        "command_context_mb": round(context_bytes / mb, 2),
        "command_outcome_mb": round(outcome_bytes / mb, 2),
    }


def compacted_sizes(database_url: str) -> dict[str, Any]:
    """:func:`sizes` after ``VACUUM FULL`` of both tables (what the live rows take on disk)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM FULL noetl.command")
        conn.execute("VACUUM FULL noetl.event")
    return sizes(database_url)


# --------------------------------------------------------------------------- the soak


@dataclass
class Run:
    kind: str
    base: int
    execution_id: str
    started: float


def soak(args: argparse.Namespace, database_url: str, logs: Path) -> dict[str, Any]:
    with cluster_of(database_url, args.workers, args.slots, logs) as cluster:
        http = cluster.client()
        for text in (CHILD, PARENT, CHAIN, RETRY, FAILING):
            response = http.post("/api/catalog/register", json={"content": text})
            assert response.status_code == 200, response.text
        runs: list[Run] = []
        running: set[str] = set()
        kinds = itertools.cycle(KINDS)
        started = time.monotonic()
        recovery: dict[str, Any] = {}
        next_worker = args.workers + 1
        while time.monotonic() - started < args.seconds:
            if not recovery and time.monotonic() - started >= args.kill_at:
                recovery = kill_one(cluster, args.slots, f"w{next_worker}")
            running = still_running(database_url, running)
            for _ in range(max(0, args.in_flight - len(running))):
                kind = next(kinds)
                base = len(runs)
                answer = http.post("/api/execute", json={"path": f"soak/{kind}", "payload": {"base": base}})
                assert answer.status_code == 200, answer.text
                execution_id = str(answer.json()["execution_id"])
                runs.append(Run(kind, base, execution_id, time.monotonic()))
                running.add(execution_id)
            if recovery and "seconds" not in recovery:
                recovered(database_url, recovery)
            time.sleep(0.2)
        submitted_for = time.monotonic() - started
        drain_deadline = time.monotonic() + args.drain
        while running and time.monotonic() < drain_deadline:
            running = still_running(database_url, running)
            if recovery and "seconds" not in recovery:
                recovered(database_url, recovery)
            time.sleep(0.2)
        if recovery and "seconds" not in recovery:
            recovered(database_url, recovery)
        drained_for = time.monotonic() - started - submitted_for
        http.close()
        report = check(database_url, runs)
        report.update(
            submitted_for_s=round(submitted_for, 1),
            drained_in_s=round(drained_for, 1),
            recovery=recovery,
            queue_at_end=dict(query(database_url, "SELECT status, count(*) FROM noetl.command GROUP BY 1")),
            sizes=sizes(database_url),
        )
        return report


def still_running(database_url: str, ids: set[str]) -> set[str]:
    if not ids:
        return ids
    found = query(
        database_url,
        "SELECT execution_id FROM noetl.execution WHERE execution_id = ANY(%s) AND status = 'RUNNING'",
        [int(i) for i in ids],
    )
    return {str(row[0]) for row in found}


def kill_one(cluster: Cluster, slots: int, replacement: str) -> dict[str, Any]:
    """SIGKILL the worker holding the most leases, start ``replacement``; what it held."""
    held = query(
        cluster.database_url,
        "SELECT r.name, c.command_id, r.worker_id FROM noetl.command c JOIN noetl.runtime r"
        " ON r.worker_id = c.worker_id WHERE c.status = 'leased'",
    )
    by_worker = Counter(name for name, _, _ in held)
    victim = by_worker.most_common(1)[0][0] if by_worker else "w1"
    proc = next(p for p in cluster.procs if p.name == victim)
    worker_id = next((w for name, _, w in held if name == victim), None)
    proc.popen.kill()
    killed = time.monotonic()
    proc.popen.wait()
    cluster.worker(replacement, slots)
    commands = [c for name, c, _ in held if name == victim]
    return {
        "victim": victim,
        "worker_id": worker_id,
        "held": commands,
        "killed": killed,
        "leases": len(commands),
    }


def recovered(database_url: str, recovery: dict[str, Any]) -> None:
    """Record the recovery time once none of the dead worker's commands is still leased to it."""
    if not recovery["held"]:
        recovery["seconds"] = 0.0
        return
    [(n,)] = query(
        database_url,
        "SELECT count(*) FROM noetl.command"
        " WHERE command_id = ANY(%s) AND status = 'leased' AND worker_id = %s",
        recovery["held"],
        recovery["worker_id"],
    )
    if n == 0:
        recovery["seconds"] = round(time.monotonic() - recovery["killed"], 2)


def check(database_url: str, runs: list[Run]) -> dict[str, Any]:
    rows = {
        str(r[0]): (r[1], r[2])
        for r in query(
            database_url,
            "SELECT execution_id, status, result FROM noetl.execution WHERE execution_id = ANY(%s)",
            [int(r.execution_id) for r in runs],
        )
    }
    counts: Counter[str] = Counter()
    wrong: list[dict[str, Any]] = []
    for run in runs:
        status, result = rows[run.execution_id]
        counts[status] += 1
        want_status, want_result = expected(run.kind, run.base)
        if status == "RUNNING":
            continue
        if status != want_status or (want_status == "COMPLETED" and result != want_result):
            wrong.append({"kind": run.kind, "id": run.execution_id, "status": status, "result": result})
    recorded_twice = query(
        database_url,
        "SELECT execution_id, command_id, count(*) FROM noetl.event"
        " WHERE event_type IN ('command.completed', 'command.failed') GROUP BY 1, 2 HAVING count(*) > 1",
    )
    issued_twice = query(
        database_url,
        "SELECT execution_id, command_id, count(*) FROM noetl.event"
        " WHERE event_type = 'command.issued' GROUP BY 1, 2 HAVING count(*) > 1",
    )
    children_twice = query(
        database_url,
        "SELECT parent_execution_id, parent_key, count(*) FROM noetl.execution"
        " WHERE parent_key IS NOT NULL GROUP BY 1, 2 HAVING count(*) > 1",
    )
    all_execs = dict(query(database_url, "SELECT status, count(*) FROM noetl.execution GROUP BY 1"))
    parked = query(database_url, "SELECT count(*) FROM noetl.event WHERE event_type = 'call.waiting'")[0][0]
    return {
        "accepted": len(runs),
        "by_kind": dict(Counter(r.kind for r in runs)),
        "completed": counts["COMPLETED"],
        "failed": counts["FAILED"],
        "failed_expected": sum(1 for r in runs if r.kind == "failing"),
        "still_running": counts["RUNNING"],
        "cancelled": counts["CANCELLED"],
        "wrong_results": len(wrong),
        "wrong_examples": wrong[:5],
        "duplicates": len(recorded_twice) + len(issued_twice) + len(children_twice),
        "all_executions_incl_children": all_execs,
        "calls_parked": parked,
    }


def run_sizes(count: int, database_url: str, logs: Path) -> dict[str, Any]:
    blob = json.dumps({f"key_{i:03d}": "v" * 8 for i in range(64)})  # about 1 KB in every context
    with cluster_of(database_url, 2, 8, logs) as cluster:
        http = cluster.client()
        answer = http.post("/api/catalog/register", json={"content": SIZES.replace("BLOB", blob)})
        assert answer.status_code == 200, answer.text
        started = time.monotonic()
        execution_id = http.post(
            "/api/execute", json={"path": "soak/sizes", "payload": {"count": count}}
        ).json()["execution_id"]
        wait_for(lambda: not still_running(database_url, {str(execution_id)}), "the loop", 1800)
        took = time.monotonic() - started
        http.close()
        as_run = sizes(database_url)
        [(status,)] = query(
            database_url, "SELECT status FROM noetl.execution WHERE execution_id = %s", execution_id
        )
        return {
            "status": status,
            "seconds": round(took, 1),
            "as_run": as_run,
            "after_vacuum_full": compacted_sizes(database_url),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=90.0, help="how long to keep submitting")
    parser.add_argument("--drain", type=float, default=90.0, help="seconds to wait for the rest to end")
    parser.add_argument("--in-flight", type=int, default=60)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--kill-at", type=float, default=30.0, help="seconds into the run")
    parser.add_argument("--sizes", type=int, default=0, help="only measure table sizes for N commands")
    parser.add_argument(
        "--database-url", default=os.environ.get("NOETL_TEST_DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep-logs", type=Path)
    args = parser.parse_args()
    logs = args.keep_logs or Path(tempfile.mkdtemp(prefix="noetl-soak-"))
    logs.mkdir(parents=True, exist_ok=True)
    with fresh_database(args.database_url) as database_url:
        if args.sizes:
            report = run_sizes(args.sizes, database_url, logs)
            print(json.dumps(report, indent=2))
            return 0
        report = soak(args, database_url, logs)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print_report(report)
    bad = report["wrong_results"] or report["duplicates"] or report["still_running"]
    return 1 if bad else 0


def print_report(report: dict[str, Any]) -> None:
    recovery = report["recovery"]
    lines = [
        f"accepted {report['accepted']} {report['by_kind']}",
        f"completed {report['completed']}  failed {report['failed']} (expected {report['failed_expected']})"
        f"  still running {report['still_running']}  cancelled {report['cancelled']}",
        f"wrong results {report['wrong_results']}  duplicates {report['duplicates']}",
        f"all executions incl. children {report['all_executions_incl_children']}",
        f"sub-playbook calls parked {report['calls_parked']}",
        f"worker kill: {recovery.get('victim')} held {recovery.get('leases')} lease(s);"
        f" re-issued within {recovery.get('seconds')} s",
        f"submitted for {report['submitted_for_s']} s, drained in {report['drained_in_s']} s",
        f"queue at end {report['queue_at_end']}",
        f"sizes {report['sizes']}",
    ]
    if report["wrong_examples"]:
        lines.append(f"wrong examples {report['wrong_examples']}")
    print("\n".join(lines))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
