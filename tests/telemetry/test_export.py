"""The event export to a real ClickHouse (Debian's ``clickhouse-server``, started by the test), from a
real server with two workers: every event arrives, each counts once, and nothing is lost while
ClickHouse is down or when the server is killed mid-export.

The workload has loops, task retries and failures (``WORKLOAD``). Each test compares, per event type,
the counts of PostgreSQL's log with ClickHouse's ``events FINAL`` (the deduplicated view).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from support.clickhouse import ClickHouseServer, clickhouse
from support.cluster import Cluster, running_cluster, wait_until

DEADLINE = 60.0
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")

WORKLOAD = {
    "tel/loop": """
        workload: {items: [1, 2, 3, 4, 5, 6]}
        workflow:
          - step: start
            loop: {in: "{{ items }}", iterator: n, spec: {mode: parallel, max_in_flight: 3}}
            tool: {kind: python, input: {n: "{{ iter.n }}"}, code: "result = {'sq': n * n}"}
            next: {arcs: [{step: end}]}
          - step: end
            tool: {kind: noop}
    """,
    "tel/retry": """
        workflow:
          - step: start
            tool:
              kind: python
              input: {attempt: "{{ _attempt }}"}
              code: |
                if attempt < 2:
                    raise ConnectionError("busy")
                result = {"ok": True, "attempts": attempt}
              spec:
                policy:
                  rules:
                    - when: "{{ output.status == 'error' }}"
                      then: {do: retry, attempts: 3, backoff: fixed, delay: 0.05}
    """,
    "tel/fail": """
        workflow:
          - step: start
            tool: {kind: python, code: "raise ValueError('boom')"}
    """,
}


def _playbook(path: str, body: str) -> str:
    head = f"apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {{name: {path.rsplit('/', 1)[-1]}, path: {path}}}\n"
    return head + textwrap.dedent(body).lstrip("\n")


@pytest.fixture(scope="module")
def ch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseServer]:
    with clickhouse(tmp_path_factory.mktemp("clickhouse")) as server:
        yield server


@pytest.fixture
def cluster(pg_database: str, ch: ClickHouseServer, tmp_path: Path) -> Iterator[Cluster]:
    database = f"noetl_{tmp_path.name[-12:].replace('-', '_')}"
    env = {
        "NOETL_EXPORT_CLICKHOUSE_URL": ch.url,
        "NOETL_EXPORT_CLICKHOUSE_DATABASE": database,
        "NOETL_EXPORT_INTERVAL": "0.2",
        "NOETL_EXPORT_BATCH": "25",
    }
    _reset(pg_database)
    with running_cluster(pg_database, tmp_path / "cluster", workers=2, env=env) as running:
        running.env["CH_DATABASE"] = database
        yield running


def _reset(database_url: str) -> None:
    """A clean log for each test (the module shares one database)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('noetl.event')").fetchone()
        if exists and exists[0]:
            conn.execute(
                "DELETE FROM noetl.event; DELETE FROM noetl.command; DELETE FROM noetl.execution;"
                " DELETE FROM noetl.export_cursor"
            )


def _api(cluster: Cluster) -> httpx.Client:
    return httpx.Client(base_url=cluster.url, timeout=10.0, headers=_auth(cluster))


def _auth(cluster: Cluster) -> dict[str, str]:
    token = cluster.env.get("NOETL_SERVICE_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def _run_workload(cluster: Cluster, rounds: int = 2) -> list[str]:
    with _api(cluster) as api:
        for path, body in WORKLOAD.items():
            assert (
                api.post("/api/catalog/register", json={"content": _playbook(path, body)}).status_code == 200
            )
        started = []
        for _ in range(rounds):
            for path in WORKLOAD:
                response = api.post("/api/execute", json={"path": path, "payload": {}})
                assert response.status_code == 200, response.text
                started.append(str(response.json()["execution_id"]))
    return started


def _finished(cluster: Cluster, ids: list[str]) -> dict[str, str]:
    def done() -> dict[str, str] | None:
        found = {}
        with _api(cluster) as api:
            for execution_id in ids:
                try:
                    response = api.get(f"/api/executions/{execution_id}/status")
                except httpx.TransportError:
                    return None
                if response.status_code != 200 or response.json()["status"] not in TERMINAL:
                    return None
                found[execution_id] = response.json()["status"]
        return found

    result: dict[str, str] = wait_until(done, "the workload to finish", DEADLINE)
    return result


def _export_status(cluster: Cluster) -> dict[str, Any]:
    with _api(cluster) as api:
        response = api.get("/api/export/status")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def _caught_up(cluster: Cluster) -> dict[str, Any]:
    def lag_zero() -> dict[str, Any] | None:
        try:
            status = _export_status(cluster)
        except httpx.TransportError:
            return None
        sinks = status["sinks"]
        return sinks[0] if sinks and sinks[0]["lag_events"] == 0 and sinks[0]["exported"] > 0 else None

    found: dict[str, Any] = wait_until(lag_zero, "the export to catch up", DEADLINE)
    return found


def _pg_counts(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute("SELECT event_type, count(*) FROM noetl.event GROUP BY 1").fetchall()
    return {kind: int(n) for kind, n in rows}


def _ch_counts(ch: ClickHouseServer, database: str, final: bool = True) -> dict[str, int]:
    text = ch.query(
        f"SELECT event_type, count() AS n FROM {database}.events {'FINAL' if final else ''} "
        "GROUP BY event_type FORMAT JSONEachRow"
    )
    return {row["event_type"]: int(row["n"]) for row in map(json.loads, text.splitlines())}


def test_every_event_is_exported_and_counts_once(
    cluster: Cluster, ch: ClickHouseServer, pg_database: str
) -> None:
    ids = _run_workload(cluster)
    statuses = _finished(cluster, ids)
    assert sorted(set(statuses.values())) == ["COMPLETED", "FAILED"]
    _caught_up(cluster)
    database = cluster.env["CH_DATABASE"]

    pg = _pg_counts(pg_database)
    assert pg["call.error"] >= 2 and pg["playbook.failed"] == 2  # failures and retries happened
    assert _ch_counts(ch, database) == pg

    # A backfill sends every event again, and still each one counts once.
    with _api(cluster) as api:
        sent = api.post("/api/export/backfill", json={"window": "1h"})
    assert sent.status_code == 200, sent.text
    assert sent.json()["events"] == sum(pg.values())
    assert _ch_counts(ch, database) == pg

    # Rows carry what the views need: the playbook, durations, tool kinds, workers, errors.
    views = ch.query(
        f"SELECT playbook_path, step, calls, failures FROM {database}.step_failures FORMAT JSONEachRow"
    )
    by_step = {(r["playbook_path"], r["step"]): r for r in map(json.loads, views.splitlines())}
    assert int(by_step["tel/fail", "start"]["failures"]) == 2
    assert int(by_step["tel/loop", "start"]["calls"]) == 2 * 6  # one call per loop item
    durations = ch.query(
        f"SELECT p95_ms FROM {database}.step_durations WHERE playbook_path = 'tel/loop' AND step = 'start' "
        "FORMAT JSONEachRow"
    )
    assert float(json.loads(durations)["p95_ms"]) > 0
    kinds = ch.query(
        f"SELECT DISTINCT tool_kind FROM {database}.events WHERE event_type = 'call.done' FORMAT JSONEachRow"
    )
    assert {json.loads(line)["tool_kind"] for line in kinds.splitlines()} >= {"python"}
    workers = ch.query(
        f"SELECT count() AS n FROM {database}.events FINAL "
        "WHERE event_type = 'command.started' AND worker_id = '' FORMAT JSONEachRow"
    )
    assert int(json.loads(workers)["n"]) == 0


def test_clickhouse_down_then_back_loses_and_doubles_nothing(
    cluster: Cluster, ch: ClickHouseServer, pg_database: str
) -> None:
    _finished(cluster, _run_workload(cluster, rounds=1))
    _caught_up(cluster)
    ch.stop()
    try:
        ids = _run_workload(cluster, rounds=2)
        _finished(cluster, ids)
        behind = wait_until(
            lambda: (s := _export_status(cluster)["sinks"][0])["last_error"] and s["lag_events"] > 0 and s,
            "the exporter to notice ClickHouse is down",
            DEADLINE,
        )
        assert "ClickHouse at http://127.0.0.1" in behind["last_error"]
    finally:
        ch.start()
    caught = _caught_up(cluster)
    assert caught["last_error"] is None
    assert _ch_counts(ch, cluster.env["CH_DATABASE"]) == _pg_counts(pg_database)


def test_a_server_killed_while_exporting_loses_nothing(
    cluster: Cluster, ch: ClickHouseServer, pg_database: str
) -> None:
    ids = _run_workload(cluster, rounds=3)
    _finished(cluster, ids)
    wait_until(lambda: _export_status(cluster)["sinks"], "the export to start")
    cluster.restart_server()  # SIGKILL: no graceful end of a batch in flight
    _caught_up(cluster)
    assert _ch_counts(ch, cluster.env["CH_DATABASE"]) == _pg_counts(pg_database)


def test_noetl_export_status_and_stats_from_the_shell(cluster: Cluster, pg_database: str) -> None:
    _finished(cluster, _run_workload(cluster, rounds=1))
    _caught_up(cluster)

    def noetl(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "noetl", *args, "--server-url", cluster.url],
            env=cluster.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "clickhouse:" in noetl("export", "status") and "0 behind" in noetl("export", "status")
    stats = json.loads(noetl("stats", "tel/fail", "--window", "1h", "--json"))
    assert stats["source"] == "clickhouse"  # the export has caught up: the sink answers
    assert stats["executions"]["failed"] == 1
    assert stats["steps"][0]["step"] == "start" and stats["steps"][0]["failure_rate"] == 1.0
    assert "start" in noetl("stats", "tel/loop")
