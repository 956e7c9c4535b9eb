"""Pools, worker resources, global resource caps and priority with a real server and real workers.

One cluster for the module: the server, one ``default`` worker (4 slots), a ``gpu`` worker with
``--resources gpu=1,memory_mb=8000`` (4 slots) and a one-slot worker on pool ``prio``.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from support.cluster import Cluster, running_cluster, wait_until

from .cluster import add_worker, completed, execute, max_overlap, register


@pytest.fixture(scope="module")
def cluster(pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("sched-routing")
    with running_cluster(pg_database, root, workers=1, concurrency=4) as running:
        add_worker(
            running, "gpu", "--pool", "gpu", "--resources", "gpu=1,memory_mb=8000", "--concurrency", "4"
        )
        add_worker(running, "prio", "--pool", "prio", "--concurrency", "1")
        yield running


def workers_of(database_url: str, execution_id: str, step: str) -> set[str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT DISTINCT r.name FROM noetl.command c JOIN noetl.runtime r ON r.worker_id = c.worker_id "
            "WHERE c.execution_id = %s AND c.step = %s",
            [int(execution_id), step],
        ).fetchall()
    return {row[0] for row in rows}


def test_steps_run_in_their_pool_and_resources_limit_a_worker(cluster: Cluster) -> None:
    path = register(cluster.url, "sched_pools.yaml")
    execution_id = execute(cluster.url, path, {"pause": 0.3})
    result = completed(cluster.url, execution_id)["result"]
    assert result == {"trained": 3}
    assert workers_of(cluster.database_url, execution_id, "start") == {"gpu"}
    assert workers_of(cluster.database_url, execution_id, "end") == {"w1"}
    with psycopg.connect(cluster.database_url) as conn:
        rows = conn.execute(
            "SELECT data FROM noetl.event WHERE execution_id = %s AND event_type = 'call.done' AND step = 'start'",
            [int(execution_id)],
        ).fetchall()
    runs = [(row[0]["result"]["start"], row[0]["result"]["end"]) for row in rows]
    assert len(runs) == 3
    assert max_overlap(runs) == 1  # one gpu: the 4-slot gpu worker runs one model at a time


def test_a_global_resource_is_never_over_its_capacity(cluster: Cluster) -> None:
    subprocess.run(
        [sys.executable, "-m", "noetl", "resource", "set", "pg_pool", "2"], env=cluster.env, check=True,
        capture_output=True,
    )  # fmt: skip
    path = register(cluster.url, "sched_global_resource.yaml")
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        with psycopg.connect(cluster.database_url, autocommit=True) as conn:
            while not stop.is_set():
                row = conn.execute(
                    "SELECT count(*) FROM noetl.command WHERE status = 'leased' AND needs ? 'resources' "
                    "AND needs -> 'resources' ? 'pg_pool'"
                ).fetchone()
                samples.append(int(row[0]) if row else 0)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        # two executions at once, 12 items each, on 3 workers with 9 slots between them
        ids = [execute(cluster.url, path, {"items": 12, "pause": 0.15}) for _ in range(2)]
        results = [completed(cluster.url, i)["result"] for i in ids]
    finally:
        stop.set()
        sampler.join()
    assert [r["loaded"] for r in results] == [12, 12]
    runs = [(run["start"], run["end"]) for r in results for run in r["runs"]]
    assert max_overlap(runs) == 2
    assert max(samples) == 2
    assert len(samples) > 10


PRIORITY = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: ranked, path: tests/ranked}
executor: {spec: {priority: 1}}
workload: {label: x}
workflow:
  - step: start
    spec: {pool: prio}
    tool: {kind: python, input: {label: "{{ label }}"}, code: "import time; result = {'started': time.time()}"}
"""


def test_higher_priority_runs_first(cluster: Cluster, tmp_path: Path) -> None:
    # hold the prio pool's only slot, then queue low and high priority executions behind it
    blocker = (
        "apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: blocker, path: tests/blocker}\n"
        "workflow:\n  - step: start\n    spec: {pool: prio}\n    tool:\n      kind: shell\n"
        f"      command: 'while [ ! -e {tmp_path}/gate ]; do sleep 0.02; done'\n"
    )
    for content in (blocker, PRIORITY):
        httpx.post(f"{cluster.url}/api/catalog/register", json={"content": content}).raise_for_status()
    blocking = execute(cluster.url, "tests/blocker")
    wait_until(lambda: _leased(cluster, blocking), "the blocker to hold the prio slot")
    order = ["low", "high", "low", "plain", "high"]
    priorities = {"low": -10, "plain": None, "high": 10}
    ids = {}
    for n, label in enumerate(order):
        extra = {"priority": priorities[label]} if priorities[label] is not None else {}
        ids[f"{label}{n}"] = execute(cluster.url, "tests/ranked", {"label": f"{label}{n}"}, **extra)
    (tmp_path / "gate").touch()
    completed(cluster.url, blocking)
    for execution_id in ids.values():
        completed(cluster.url, execution_id)
    with psycopg.connect(cluster.database_url) as conn:
        rows = conn.execute(
            "SELECT e.execution_id, (e.data -> 'result' ->> 'started')::float8 FROM noetl.event e "
            "WHERE e.execution_id = ANY(%s) AND e.event_type = 'call.done' AND e.step = 'start'",
            [[int(i) for i in ids.values()]],
        ).fetchall()
    by_id = {str(r[0]): r[1] for r in rows}
    ran = sorted(ids, key=lambda name: by_id[ids[name]])
    # high (10) first, oldest first; then the playbook's own priority (1); then low (-10)
    assert ran == ["high1", "high4", "plain3", "low0", "low2"]


def _leased(cluster: Cluster, execution_id: str) -> bool:
    with psycopg.connect(cluster.database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM noetl.command WHERE execution_id = %s AND status = 'leased'",
            [int(execution_id)],
        ).fetchone()
    return bool(row and row[0])
