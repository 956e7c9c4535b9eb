"""The ``clickhouse`` tool on both runtimes against a real ClickHouse (Debian ``clickhouse-server``
18.16, started here on free ports with its own data directory; ``.ci/run`` installs it).

The credential (type ``clickhouse``: url, user, password, database) comes from a credentials file.
Refused credentials are checked against a real authentication failure: a wrong password for the
server's ``default`` user (which has none).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.clickhouse import ClickHouseServer, clickhouse
from support.cluster import free_port
from support.toolcluster import private_cluster


@pytest.fixture(scope="module")
def ch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseServer]:
    root = tmp_path_factory.mktemp("clickhouse")
    with clickhouse(root) as server:
        server.query("CREATE DATABASE IF NOT EXISTS shop")
        yield server


@pytest.fixture(scope="module")
def file_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ch-files")


@pytest.fixture(scope="module")
def distributed_cluster(
    pg_server_url: str, tmp_path_factory: pytest.TempPathFactory, file_root: Path
) -> Iterator[Any]:
    env = {"NOETL_FILE_ROOTS": str(file_root)}
    with private_cluster(pg_server_url, tmp_path_factory.mktemp("ch-cluster"), env) as cluster:
        yield cluster


def run(noetl_run: Any, text: str, url: str, root: Path, password: str = "") -> Any:
    creds = {
        "my_ch": {
            "type": "clickhouse",
            "data": {"url": url, "user": "default", "password": password, "database": "shop"},
        }
    }
    return noetl_run(
        text,
        "--credentials",
        "creds.json",
        files={"creds.json": json.dumps(creds)},
        env={"NOETL_FILE_ROOTS": str(root)},
    )


def test_command_insert_query_and_file_insert(
    noetl_run, runtime: str, ch: ClickHouseServer, file_root: Path
) -> None:
    table = f"orders_{runtime}"
    (file_root / f"more-{runtime}.jsonl").write_text(
        "".join(json.dumps({"id": i, "region": "apac", "total": 1.0}) + "\n" for i in range(10, 2510))
    )
    (file_root / f"csv-{runtime}.csv").write_text("id,region,total\n900,eu,5\n901,us,6\n")
    text = f"""
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {{name: ch_ops}}
    workflow:
      - step: start
        tool:
          kind: clickhouse
          auth: my_ch
          operation: command
          query: "CREATE TABLE IF NOT EXISTS {table} (id UInt32, region String, total Float64) ENGINE = MergeTree ORDER BY id"
        next: {{arcs: [{{step: empty}}]}}
      - step: empty
        tool: {{kind: clickhouse, auth: my_ch, operation: command, query: "TRUNCATE TABLE {table}"}}
        next: {{arcs: [{{step: rows}}]}}
      - step: rows
        tool:
          kind: clickhouse
          auth: my_ch
          operation: insert
          table: {table}
          rows: [{{id: 1, region: eu, total: 9.5}}, {{id: 2, region: us, total: 12.0}}, {{id: 3, region: eu, total: 1.5}}]
        next: {{arcs: [{{step: from_file}}]}}
      - step: from_file
        tool: {{kind: clickhouse, auth: my_ch, operation: insert, table: {table}, file: more-{runtime}.jsonl, batch: 1000}}
        next: {{arcs: [{{step: from_csv}}]}}
      - step: from_csv
        tool: {{kind: clickhouse, auth: my_ch, operation: insert, table: {table}, file: csv-{runtime}.csv}}
        next: {{arcs: [{{step: summary}}]}}
      - step: summary
        tool:
          kind: clickhouse
          auth: my_ch
          operation: query
          query: "SELECT region, count() AS n, sum(total) AS revenue FROM {table} GROUP BY region ORDER BY region"
        next: {{arcs: [{{step: capped}}]}}
      - step: capped
        tool: {{kind: clickhouse, auth: my_ch, query: "SELECT id FROM {table} ORDER BY id", limit: 5}}
    """
    r = run(noetl_run, text, ch.url, file_root)
    assert r.status == "COMPLETED", r.outcome and r.outcome["error"]
    res = r.results
    assert res["rows"] == {"table": table, "rows": 3} and res["from_file"]["rows"] == 2500
    assert res["from_csv"]["rows"] == 2
    assert res["summary"]["columns"] == ["region", "n", "revenue"]
    by_region = {row["region"]: row for row in res["summary"]["rows"]}
    assert by_region["eu"]["revenue"] == 16.0 and by_region["apac"]["revenue"] == 2500.0
    assert int(by_region["apac"]["n"]) == 2500  # UInt64 comes back as a string in 18.16's JSON
    assert [row["id"] for row in res["capped"]["rows"]] == [1, 2, 3, 10, 11] and res["capped"][
        "truncated"
    ] is True


def test_errors_name_code_credential_and_endpoint(
    noetl_run, runtime: str, ch: ClickHouseServer, file_root: Path
) -> None:
    text = """
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: ch_bad}
    workflow:
      - step: start
        tool: {kind: clickhouse, auth: my_ch, query: "SELECT * FROM no_such_table"}
    """
    r = run(noetl_run, text, ch.url, file_root)
    assert r.status == "FAILED"
    message = r.outcome["error"]["message"]
    assert "clickhouse query (step 'start'): code 60" in message and "no_such_table" in message
    r = run(noetl_run, text, ch.url, file_root, password="wrong-password-7")
    assert r.status == "FAILED"
    message = r.outcome["error"]["message"]
    assert (
        "credential 'my_ch' was refused" in message
        and "wrong-password-7" not in json.dumps(r.events) + r.stdout
    )
    port = free_port()
    r = run(noetl_run, text, f"http://127.0.0.1:{port}", file_root)
    assert r.status == "FAILED" and f"cannot reach 127.0.0.1:{port}" in r.outcome["error"]["message"]
