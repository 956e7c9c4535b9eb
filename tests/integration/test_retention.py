"""Automatic retention (NOETL_RETENTION): the scheduler's leader deletes ended executions past the
window when it takes the lead, and keeps running ones."""

from __future__ import annotations

import textwrap
from pathlib import Path

import httpx
import psycopg

from support.cluster import running_cluster, wait_until

PLAYBOOK = textwrap.dedent(
    """
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: kept, path: ret/kept}
    workflow:
      - step: start
        tool: {kind: noop}
    """
).lstrip()


def test_the_leader_prunes_ended_executions_past_the_window(pg_database: str, tmp_path: Path) -> None:
    env = {"NOETL_RETENTION": "1s", "NOETL_SCHEDULER_TICK": "0.2"}
    with running_cluster(pg_database, tmp_path, workers=1, env=env) as cluster:
        with httpx.Client(base_url=cluster.url, timeout=10) as api:
            assert api.post("/api/catalog/register", json={"content": PLAYBOOK}).status_code == 200
            ended = api.post("/api/execute", json={"path": "ret/kept"}).json()["execution_id"]
            wait_until(
                lambda: api.get(f"/api/executions/{ended}/status").json()["status"] == "COMPLETED", "the run"
            )
        with psycopg.connect(pg_database, autocommit=True) as conn:
            conn.execute(  # a running execution of long ago: never pruned
                "INSERT INTO noetl.execution (execution_id, path, status, created_at)"
                " VALUES (42, 'ret/kept', 'RUNNING', now() - interval '1 day')"
            )
            conn.execute(
                "UPDATE noetl.execution SET completed_at = now() - interval '1 minute' WHERE execution_id = %s",
                (int(ended),),
            )
        cluster.restart_server()  # a new leader prunes when it takes the lead

        def remaining() -> list[int] | None:
            with psycopg.connect(pg_database, autocommit=True) as conn:
                ids = [r[0] for r in conn.execute("SELECT execution_id FROM noetl.execution").fetchall()]
            return ids if int(ended) not in ids else None

        assert wait_until(remaining, "the ended execution to be pruned", 60) == [42]
