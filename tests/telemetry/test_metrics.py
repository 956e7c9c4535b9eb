"""Worker metrics leave the workers: pushed to a real VictoriaMetrics (its Prometheus import API) or
Prometheus (remote write), or reported with heartbeats to the server's ``/metrics``; an unreachable
endpoint never holds a step back.

Each test runs a server with two worker processes and compares the workers' task counts with the
commands the event log says were executed.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.cluster import Cluster, free_port, running_cluster, wait_until
from support.metrics_servers import MetricsServer, prometheus, victoria_metrics

DEADLINE = 60.0
PLAYBOOK = textwrap.dedent(
    """
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: metered, path: tel/metered}
    workflow:
      - step: start
        loop: {in: "{{ [1, 2, 3, 4, 5] }}", iterator: n, spec: {mode: parallel}}
        tool: {kind: python, input: {n: "{{ iter.n }}"}, code: "result = n"}
        next: {arcs: [{step: bad}]}
      - step: bad
        tool: {kind: python, code: "raise ValueError('counted as an error')"}
    """
).lstrip()


def _headers(cluster: Cluster) -> dict[str, str]:
    token = cluster.env.get("NOETL_SERVICE_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def _run(cluster: Cluster, times: int) -> int:
    """Run the playbook ``times`` times to the end; the commands the log says were executed."""
    with httpx.Client(base_url=cluster.url, headers=_headers(cluster), timeout=10) as api:
        assert api.post("/api/catalog/register", json={"content": PLAYBOOK}).status_code == 200
        ids = [
            api.post("/api/execute", json={"path": "tel/metered"}).json()["execution_id"]
            for _ in range(times)
        ]

        def finished() -> bool:
            return all(
                api.get(f"/api/executions/{i}/status").json()["status"] in ("COMPLETED", "FAILED")
                for i in ids
            )

        wait_until(finished, "the executions to end", DEADLINE)
    with psycopg.connect(cluster.database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM noetl.event WHERE event_type IN ('command.completed', 'command.failed')"
        ).fetchone()
    assert row is not None
    return int(row[0])


@contextmanager
def _cluster(pg_database: str, root: Path, env: dict[str, str]) -> Iterator[Cluster]:
    with psycopg.connect(pg_database, autocommit=True) as conn:
        if (conn.execute("SELECT to_regclass('noetl.event')").fetchone() or [None])[0]:
            conn.execute("DELETE FROM noetl.event; DELETE FROM noetl.command; DELETE FROM noetl.execution")
    with running_cluster(pg_database, root, workers=2, env=env) as cluster:
        yield cluster


@pytest.fixture
def vm(tmp_path: Path) -> Iterator[MetricsServer]:
    with victoria_metrics(tmp_path / "vm") as server:
        yield server


def test_workers_push_step_counts_to_victoria_metrics(
    pg_database: str, tmp_path: Path, vm: MetricsServer
) -> None:
    env = {
        "NOETL_METRICS_PUSH_URL": f"{vm.url}/api/v1/import/prometheus",
        "NOETL_METRICS_PUSH_INTERVAL": "0.3",
    }
    with _cluster(pg_database, tmp_path / "cluster", env) as cluster:
        executed = _run(cluster, times=3)
        assert executed == 3 * 6
        wait_until(
            lambda: vm.value("sum(noetl_worker_tasks_total)") == executed,
            f"VictoriaMetrics to count {executed} tasks",
            DEADLINE,
        )
        by_kind = {
            (r["metric"]["kind"], r["metric"]["outcome"]): float(r["value"][1])
            for r in vm.query("sum by (kind, outcome) (noetl_worker_tasks_total)")
        }
        assert by_kind == {("python", "ok"): 15.0, ("python", "python"): 3.0}
        workers = {r["metric"]["worker"] for r in vm.query("noetl_worker_tasks_total")}
        assert len(workers) == 2  # one series set per worker
        assert vm.value("sum(noetl_worker_step_duration_seconds_count)") == executed


def test_without_a_push_endpoint_the_server_serves_worker_metrics(pg_database: str, tmp_path: Path) -> None:
    env = {"NOETL_WORKER_HEARTBEAT_SECONDS": "0.3"}
    with _cluster(pg_database, tmp_path / "cluster", env) as cluster:
        executed = _run(cluster, times=2)

        def served() -> float | None:
            text = httpx.get(f"{cluster.url}/metrics", headers=_headers(cluster), timeout=10).text
            families = {f.name: f for f in text_string_to_metric_families(text)}
            tasks = families.get("noetl_worker_tasks")
            total = sum(s.value for s in tasks.samples if s.name.endswith("_total")) if tasks else 0.0
            return total if total == executed else None

        wait_until(served, f"/metrics to show {executed} worker tasks", DEADLINE)
        # No export configured: statistics come from PostgreSQL's log.
        stats = httpx.get(f"{cluster.url}/api/stats/tel/metered", params={"window": "1h"}, timeout=10).json()
        assert stats["source"] == "postgres" and stats["executions"]["failed"] == 2
        by_step = {s["step"]: s for s in stats["steps"]}
        assert by_step["start"]["calls"] == 10 and by_step["bad"]["failure_rate"] == 1.0


def test_an_unreachable_endpoint_drops_metrics_and_never_stalls_steps(
    pg_database: str, tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/api/v1/import/prometheus"  # nothing listens there
    env = {"NOETL_METRICS_PUSH_URL": dead, "NOETL_METRICS_PUSH_INTERVAL": "0.2"}
    with _cluster(pg_database, tmp_path / "cluster", env) as cluster:
        assert _run(cluster, times=3) == 18
        wait_until(
            lambda: "metrics push to" in cluster.worker("w1").output(),
            "the worker's counted warning",
            DEADLINE,
        )
        assert "failures so far" in cluster.worker("w1").output()


def test_remote_write_to_prometheus(pg_database: str, tmp_path: Path) -> None:
    with prometheus(tmp_path / "prom") as prom:
        env = {"NOETL_METRICS_PUSH_URL": f"{prom.url}/api/v1/write", "NOETL_METRICS_PUSH_INTERVAL": "0.3"}
        with _cluster(pg_database, tmp_path / "cluster", env) as cluster:
            executed = _run(cluster, times=2)
            wait_until(
                lambda: prom.value("sum(noetl_worker_tasks_total)") == executed,
                f"Prometheus to count {executed} tasks",
                DEADLINE,
            )
