"""Fair sharing between concurrency keys, with a real server and real workers.

Tenant ``acme`` starts a 200-item loop (each item 50 ms) on 4 worker slots; once its items are
running, tenant ``globex`` starts a single item. With keys, ``globex``'s command takes the next free
slot although about 60 older ``acme`` commands are ready before it (the loop window): it overtakes
them (counted as older ``acme`` items that completed after it; all items take the same time). The same run without keys is measured for comparison (first come, first served). Both
tenants' times are printed (``pytest -s``) for the record.

Then the limits: a key's ``concurrency_limit`` of 2 and ``max_concurrent_executions`` of 2, sampled
from the queue while the work runs on 4 slots: never above 2, and 2 reached.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest

from support.cluster import Cluster, running_cluster, wait_until

from .cluster import EXAMPLES, completed, execute

ITEMS = 200


@pytest.fixture(scope="module")
def cluster(pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("sched-fair")
    with running_cluster(pg_database, root, workers=2, concurrency=2) as running:
        yield running


def register(cluster: Cluster, keyed: bool) -> str:
    import httpx

    content = (EXAMPLES / "sched_tenants.yaml").read_text(encoding="utf-8")
    if not keyed:
        content = content.replace('concurrency_key: "{{ tenant }}"', "priority: 0").replace(
            "concurrency_limit: 8 ", "timeout: 60 "
        )
        content = content.replace("path: examples/sched_tenants", "path: tests/untenanted")
    answer = httpx.post(f"{cluster.url}/api/catalog/register", json={"content": content})
    answer.raise_for_status()
    return str(answer.json()["path"])


def running_items(cluster: Cluster, execution_id: str) -> int:
    with psycopg.connect(cluster.database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM noetl.command WHERE execution_id = %s AND status IN ('leased', 'done')",
            [int(execution_id)],
        ).fetchone()
    return int(row[0]) if row else 0


def contend(cluster: Cluster, path: str) -> dict[str, float]:
    big = execute(cluster.url, path, {"tenant": "acme", "items": ITEMS, "pause": 0.05})
    wait_until(lambda: running_items(cluster, big) >= 8, "acme's items to be running")
    small = execute(cluster.url, path, {"tenant": "globex", "items": 1, "pause": 0.05})
    completed(cluster.url, small, timeout=120)
    completed(cluster.url, big, timeout=120)
    with psycopg.connect(cluster.database_url) as conn:
        times = dict(
            conn.execute(
                "SELECT execution_id::text, extract(epoch FROM completed_at - created_at)::float8 "
                "FROM noetl.execution WHERE execution_id = ANY(%s)",
                [[int(big), int(small)]],
            ).fetchall()
        )
        ended = dict(
            conn.execute(
                "SELECT command_id, at FROM noetl.event WHERE execution_id = ANY(%s) "
                "AND event_type = 'command.completed' AND step = 'start'",
                [[int(big), int(small)]],
            ).fetchall()
        )
        seqs = dict(
            conn.execute(
                "SELECT command_id, seq FROM noetl.command WHERE execution_id = ANY(%s) AND step = 'start'",
                [[int(big), int(small)]],
            ).fetchall()
        )
    small_id = next(c for c in seqs if c.startswith(f"{small}:"))
    overtaken = sum(
        1
        for c, seq in seqs.items()
        if c.startswith(f"{big}:") and seq < seqs[small_id] and ended[c] > ended[small_id]
    )
    return {"acme_seconds": times[big], "globex_seconds": times[small], "overtaken": overtaken}


def test_a_single_step_tenant_is_not_starved_by_a_big_loop(cluster: Cluster) -> None:
    keyed = contend(cluster, register(cluster, keyed=True))
    unkeyed = contend(cluster, register(cluster, keyed=False))
    print(f"\nfairness, {ITEMS} acme items x 50 ms on 4 slots vs 1 globex item:")
    print(f"  with concurrency keys:    acme {keyed['acme_seconds']:.2f} s, globex {keyed['globex_seconds']:.2f} s, "
          f"globex overtook {keyed['overtaken']} older acme commands")  # fmt: skip
    print(f"  without keys (FIFO):      acme {unkeyed['acme_seconds']:.2f} s, globex {unkeyed['globex_seconds']:.2f} s, "
          f"globex overtook {unkeyed['overtaken']} older acme commands")  # fmt: skip
    assert keyed["overtaken"] >= 10
    assert keyed["globex_seconds"] < keyed["acme_seconds"]


def sample_while(cluster: Cluster, query: str, params: list[object], done: Callable[[], bool]) -> list[int]:
    """Values of ``query`` (one integer) sampled until ``done()``."""
    found: list[int] = []
    with psycopg.connect(cluster.database_url, autocommit=True) as conn:
        while not done():
            row = conn.execute(query, params).fetchone()
            found.append(int(row[0]) if row else 0)
    return found


def test_key_limit_and_max_concurrent_executions_hold(cluster: Cluster) -> None:
    import httpx

    content = (EXAMPLES / "sched_tenants.yaml").read_text(encoding="utf-8")
    content = content.replace("concurrency_limit: 8 ", "concurrency_limit: 2 ")
    content = content.replace("max_concurrent_executions: 20 ", "max_concurrent_executions: 2 ")
    content = content.replace("path: examples/sched_tenants", "path: tests/limited")
    httpx.post(f"{cluster.url}/api/catalog/register", json={"content": content}).raise_for_status()

    # one tenant, 16 items on 4 slots: never more than 2 of its items at once
    one = execute(cluster.url, "tests/limited", {"tenant": "initech", "items": 16, "pause": 0.1})
    per_key = sample_while(
        cluster,
        "SELECT count(*) FROM noetl.command WHERE status = 'leased' AND concurrency_key = 'initech'",
        [],
        lambda: status_of(cluster, one) != "RUNNING",
    )
    completed(cluster.url, one)
    assert max(per_key) == 2

    # five executions (one tenant each): never more than 2 of them with work running at once
    ids = [
        execute(cluster.url, "tests/limited", {"tenant": f"t{n}", "items": 3, "pause": 0.1}) for n in range(5)
    ]
    running = sample_while(
        cluster,
        "SELECT count(DISTINCT execution_id) FROM noetl.command WHERE status = 'leased' AND execution_id = ANY(%s)",
        [[int(i) for i in ids]],
        lambda: all(status_of(cluster, i) != "RUNNING" for i in ids),
    )
    for execution_id in ids:
        completed(cluster.url, execution_id)
    print(
        f"\nlimits: per-key in flight max {max(per_key)} (limit 2); executions with work max {max(running)} (limit 2)"
    )
    assert max(running) == 2


def status_of(cluster: Cluster, execution_id: str) -> str:
    with psycopg.connect(cluster.database_url) as conn:
        row = conn.execute(
            "SELECT status FROM noetl.execution WHERE execution_id = %s", [int(execution_id)]
        ).fetchone()
    return str(row[0]) if row else "RUNNING"
