"""Sub-playbooks that wait hold no worker slot (issue 19), against real server and worker processes.

A parent's loop iteration that calls a child playbook ends its run waiting (``call.waiting``; the
command is ``waiting`` in the queue with no worker) and comes back when the child ends. So a cluster
with fewer slots than waiting parents keeps going: before, every slot could be held by a parent
waiting for a child whose commands had no slot to run in, and the cluster froze (the tests below
hung on 0e0e3e0; the deadline turns that into a clean failure).

* 1 worker x 2 slots, 20 parents at once, each looping over 10 children (``max_in_flight: 5``):
  every execution completes with the right result, each command recorded once;
* the same with the worker SIGKILLed midway and a second worker started: everything completes with
  the right results, nothing recorded twice, and a command can be seen parked while waiting;
* a parent step's timeout reaches its (parked) child: the child is cancelled, the step fails with a
  timeout error its arcs see;
* cancelling a parent whose command is parked cancels the child and the parked command;
* a pipeline of two calls parks at each (the second run attaches to the first child), while a call
  after a task with effects waits in the worker: both give the right results, one child per call.
"""

from __future__ import annotations

import concurrent.futures
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from integration.test_failures import (
    FAST_RECOVERY,
    Api,
    api_of,
    assert_log_is_clean,
    playbook,
    rows,
)
from noetl.engine import events as ev
from support.cluster import Cluster, running_cluster, spawn, wait_until, workers_registered

DEADLINE = 120.0
"""Seconds all executions of a test may take (a frozen cluster never finishes: a clean failure)."""

PARENTS = 20
CHILDREN = 10

CHILD = """
workload: {n: 0}
workflow:
  - step: start
    tool: {kind: python, input: {n: "{{ n }}"}, code: "result = {'square': n * n}"}
    next: {arcs: [{step: end}]}
  - step: end
    tool: {kind: noop}
executor: {spec: {final_step: start}}
"""

PARENT = """
workload: {base: 0, items: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}
workflow:
  - step: start
    loop: {in: "{{ items }}", iterator: item, spec: {mode: parallel, max_in_flight: 5}}
    tool: {kind: playbook, path: waits/child, input: {n: "{{ base * 100 + iter.item }}"}}
    next: {arcs: [{step: total}]}
  - step: total
    tool:
      kind: python
      input: {rs: "{{ start.results }}"}
      code: "result = {'sum': sum(r['square'] for r in rs), 'count': len(rs)}"
"""


def expected(base: int) -> dict[str, int]:
    return {"sum": sum((base * 100 + i) ** 2 for i in range(CHILDREN)), "count": CHILDREN}


@pytest.fixture
def database(pg_server_url: str) -> Iterator[str]:
    """A fresh database for one test's cluster."""
    name = f"t_waits_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(pg_server_url)
    try:
        yield urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def small_cluster(database: str, tmp_path: Path) -> Iterator[Cluster]:
    """A server and ONE worker with TWO slots (fewer than the parents that wait at once)."""
    with running_cluster(database, tmp_path / "cluster", workers=1, concurrency=2, env=FAST_RECOVERY) as c:
        yield c


def start_all(api: Api) -> dict[str, int]:
    """Register the playbooks and start PARENTS parents at once; execution id -> its base."""
    api.register(playbook("waits/child", CHILD))
    api.register(playbook("waits/parent", PARENT))
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda b: api.execute("waits/parent", {"base": b}), range(PARENTS)))
    return {execution_id: base for base, execution_id in enumerate(ids)}


def finished_count(database_url: str, parents: dict[str, int]) -> int:
    [(n,)] = rows(
        database_url,
        "SELECT count(*) FROM noetl.execution WHERE execution_id = ANY(%s) AND status <> 'RUNNING'",
        [int(i) for i in parents],
    )
    return int(n)


def check_everything(api: Api, database_url: str, parents: dict[str, int]) -> None:
    """Every parent COMPLETED with its right result; every child COMPLETED once per call; logs clean."""
    for execution_id, base in parents.items():
        status = api.status(execution_id)
        assert status["status"] == "COMPLETED", status
        assert status["result"] == expected(base), (base, status["result"])
        events = api.events(execution_id)
        assert_log_is_clean(events)
        children = api.get("/api/executions", parent_execution_id=execution_id, limit=100)["executions"]
        assert len(children) == CHILDREN and {c["status"] for c in children} == {"COMPLETED"}
        # each iteration's call finished with its own child's result, recorded once
        done = [e for e in events if e["event_type"] == ev.CALL_DONE and e["step"] == "start"]
        assert sorted(e["data"]["index"] for e in done) == list(range(CHILDREN))
    for execution_id in [r[0] for r in rows(database_url, "SELECT execution_id FROM noetl.execution")]:
        assert_log_is_clean(api.events(str(execution_id)))
    # nothing is left in the queue
    left = rows(database_url, "SELECT status, count(*) FROM noetl.command GROUP BY status ORDER BY status")
    assert {status for status, _ in left} <= {"done", "failed"}, left


def test_twenty_parents_of_ten_children_on_two_slots_all_complete(
    database: str, small_cluster: Cluster
) -> None:
    with api_of(small_cluster) as api:
        parents = start_all(api)
        most_waiting = 0

        def all_finished() -> bool:
            nonlocal most_waiting
            [(waiting,)] = rows(database, "SELECT count(*) FROM noetl.command WHERE status = 'waiting'")
            most_waiting = max(most_waiting, int(waiting))
            return finished_count(database, parents) == PARENTS

        wait_until(all_finished, "every parent to finish", DEADLINE)
        # more calls waited at once than there are slots: waiting held none
        assert most_waiting > 2, most_waiting
        check_everything(api, database, parents)
        parked = [
            e
            for execution_id in list(parents)[:3]
            for e in api.events(execution_id)
            if e["event_type"] == ev.CALL_WAITING
        ]
    assert parked and all(e["data"]["wait"]["kind"] == "playbook" for e in parked)


def test_a_worker_killed_midway_everything_still_completes_once(
    database: str,
    small_cluster: Cluster,
) -> None:
    with api_of(small_cluster) as api:
        parents = start_all(api)

        def children_done() -> int:
            [(n,)] = rows(
                database,
                "SELECT count(*) FROM noetl.execution WHERE parent_execution_id IS NOT NULL"
                " AND status = 'COMPLETED'",
            )
            return int(n)

        wait_until(lambda: children_done() >= 40, "a fifth of the children to finish", DEADLINE)
        victim = small_cluster.worker("w1")
        assert victim.kill() == -signal.SIGKILL
        killed_at = time.monotonic()
        second = spawn(
            "worker2",
            ["worker", "start", "--concurrency", "2", "--grace", "1", "--name", "w2"],
            small_cluster.env,
            small_cluster.root,
        )
        small_cluster.processes.append(second)
        wait_until(lambda: workers_registered(small_cluster.url) >= 2, "the second worker")
        before = children_done()
        wait_until(lambda: children_done() > before, "progress after the kill", DEADLINE)
        print(f"progress resumed {time.monotonic() - killed_at:.1f} s after the kill")
        wait_until(lambda: finished_count(database, parents) == PARENTS, "every parent to finish", DEADLINE)
        check_everything(api, database, parents)


TIMEOUT_CHILD = """
workflow:
  - step: start
    tool: {kind: shell, command: "sleep 30"}
"""

TIMEOUT_PARENT = """
workflow:
  - step: start
    tool: {kind: playbook, path: waits/slow, timeout: 1}
    next:
      arcs:
        - {step: handled, when: "{{ output.status == 'error' and output.error.kind == 'timeout' }}"}
  - step: handled
    tool: {kind: python, code: "result = 'timed out'"}
"""


def test_a_parent_step_timeout_cancels_its_parked_child(database: str, small_cluster: Cluster) -> None:
    with api_of(small_cluster) as api:
        api.register(playbook("waits/slow", TIMEOUT_CHILD))
        api.register(playbook("waits/timeout_parent", TIMEOUT_PARENT))
        parent_id = api.execute("waits/timeout_parent")
        status = api.finished(parent_id, 60)
        [child] = api.get("/api/executions", parent_execution_id=parent_id)["executions"]
        child_status = api.finished(child["execution_id"], 30)
        events = api.events(parent_id)
    assert child_status["status"] == "CANCELLED", child_status
    assert status["status"] == "COMPLETED", status
    assert status["result"] == "timed out"
    kinds = Counter(e["event_type"] for e in events)
    assert kinds[ev.CALL_WAITING] == 1 and kinds[ev.CALL_ERROR] == 1
    [error] = [e for e in events if e["event_type"] == ev.CALL_ERROR]
    assert error["data"]["error"]["kind"] == "timeout"
    assert_log_is_clean(events)


CANCEL_PARENT = """
workflow:
  - step: start
    tool: {kind: playbook, path: waits/slow}
"""


def test_cancelling_a_parent_whose_call_is_parked_cancels_the_child(
    database: str,
    small_cluster: Cluster,
) -> None:
    with api_of(small_cluster) as api:
        api.register(playbook("waits/slow", TIMEOUT_CHILD))
        api.register(playbook("waits/cancel_parent", CANCEL_PARENT))
        parent_id = api.execute("waits/cancel_parent")

        def parked() -> Any:
            found = rows(
                database,
                "SELECT status, worker_id FROM noetl.command WHERE execution_id = %s",
                int(parent_id),
            )
            return found == [("waiting", None)]

        wait_until(parked, "the parent's call to be parked")
        [child] = api.get("/api/executions", parent_execution_id=parent_id)["executions"]
        answer = api.post(f"/api/executions/{parent_id}/cancel", {"reason": "stopped by the test"})
        assert sorted(answer["cancelled"]) == sorted([parent_id, child["execution_id"]])
        assert api.finished(parent_id)["status"] == "CANCELLED"
        assert api.finished(child["execution_id"])["status"] == "CANCELLED"
        queue = rows(database, "SELECT status FROM noetl.command WHERE execution_id = %s", int(parent_id))
    assert queue == [("cancelled",)]


PIPELINES = """
workflow:
  - step: start
    tool:
      - {name: init, kind: noop, set: {iter.base: 3}}
      - {name: first, kind: playbook, path: waits/child, input: {n: "{{ iter.base }}"}}
      - {name: second, kind: playbook, path: waits/child, input: {n: "{{ first.square }}"}}
    next: {arcs: [{step: effects}]}
  - step: effects
    tool:
      - {name: side, kind: python, code: "result = 5"}
      - {name: call, kind: playbook, path: waits/child, input: {n: "{{ side }}"}}
"""


def test_pipelines_of_calls_park_and_calls_after_effects_wait_in_the_worker(
    database: str, small_cluster: Cluster
) -> None:
    with api_of(small_cluster) as api:
        api.register(playbook("waits/child", CHILD))
        api.register(playbook("waits/pipelines", PIPELINES))
        parent_id = api.execute("waits/pipelines")
        status = api.finished(parent_id, 60)
        events = api.events(parent_id)
        children = api.get("/api/executions", parent_execution_id=parent_id)["executions"]
    assert status["status"] == "COMPLETED", status
    assert (status["result"]["side"], status["result"]["call"]) == (5, {"square": 25})
    [first] = [e for e in events if e["event_type"] == ev.CALL_DONE and e["step"] == "start"]
    ran = first["data"]["result"]
    assert (ran["first"], ran["second"]) == ({"square": 9}, {"square": 81})
    waits = Counter(e["step"] for e in events if e["event_type"] == ev.CALL_WAITING)
    assert waits["effects"] == 0  # the python task ran first: the call waited in the worker
    assert 1 <= waits["start"] <= 2  # parked at each call whose child had not ended yet
    assert len(children) == 3 and {c["status"] for c in children} == {"COMPLETED"}
    assert_log_is_clean(events)
