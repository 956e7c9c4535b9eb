"""``--log-format json`` (NOETL_LOG_FORMAT=json): the server's and a worker's logs are JSON lines."""

from __future__ import annotations

import json
from pathlib import Path

from support.cluster import running_cluster, wait_until


def _json_lines(text: str) -> list[dict[str, object]]:
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        if line.startswith("noetl: "):  # the CLI's own startup notes on stderr, before logging starts
            continue
        parsed.append(json.loads(line))  # fails the test on any non-JSON log line
    return parsed


def test_server_and_worker_log_json_objects(pg_database: str, tmp_path: Path) -> None:
    env = {"NOETL_LOG_FORMAT": "json", "NOETL_LOG_LEVEL": "info"}
    with running_cluster(pg_database, tmp_path, workers=1, env=env) as cluster:
        worker = cluster.worker("w1")
        started = wait_until(
            lambda: [e for e in _json_lines(worker.output()) if e.get("worker_id")], "a worker log line"
        )
        server_lines = wait_until(lambda: _json_lines(cluster.server.output()), "a server log line")
    assert {"ts", "level", "logger", "message"} <= set(started[0])
    assert all({"ts", "level", "message"} <= set(line) for line in server_lines)
