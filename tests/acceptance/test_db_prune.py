"""``noetl db prune`` from the shell: a dry run counts, a real run deletes and reports the sizes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import psycopg

from noetl.store import migrate


def noetl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "noetl", *args], capture_output=True, text=True, timeout=120)


def test_prune_dry_run_then_for_real(pg_database: str) -> None:
    asyncio.run(migrate.apply(pg_database))
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO noetl.execution (execution_id, path, status, completed_at)"
            " VALUES (1, 'p', 'COMPLETED', now() - interval '40 days'), (2, 'p', 'COMPLETED', now())"
        )
    dry = noetl("db", "prune", "--older-than", "30d", "--dry-run", "--json", "--database-url", pg_database)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["executions"] == 1 and json.loads(dry.stdout)["dry_run"] is True

    real = noetl("db", "prune", "--older-than", "30d", "--database-url", pg_database)
    assert real.returncode == 0, real.stderr
    assert "deleted 1 executions" in real.stdout and "event" in real.stdout
    with psycopg.connect(pg_database, autocommit=True) as conn:
        assert conn.execute("SELECT array_agg(execution_id) FROM noetl.execution").fetchone() == ([2],)

    bad = noetl("db", "prune", "--older-than", "forever", "--database-url", pg_database)
    assert bad.returncode == 2 and "--older-than 'forever' is not a duration" in bad.stderr
