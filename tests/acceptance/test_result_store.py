"""Loops beyond the inline limit keep their results in the log, not in the state (DECISIONS 19).

``NOETL_INLINE_RESULTS=3`` here (server, workers and ``noetl run`` alike), so a 6-item loop is
"large": its ``loop.done`` event carries a ``{"$results": ...}`` reference instead of the list, no
folded state holds the iterations' results, and yet every place a user sees or uses them - a later
task's templates, the outcome of ``noetl run`` on both runtimes, the API's execution result, a
sub-playbook's result - gets the full list, identical to a loop under the limit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from noetl.engine import events as ev
from noetl.engine.state import fold
from support.cluster import Cluster, running_cluster, wait_until

LIMIT = {"NOETL_INLINE_RESULTS": "3"}
COMPARED = ("status", "executed_steps", "step_results", "final_result", "variables", "error")


def playbook(path: str, body: str) -> str:
    head = f"apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {{name: {path.rsplit('/', 1)[-1]}, path: {path}}}\n"
    return head + textwrap.dedent(body).lstrip("\n")


BIG_LOOP = playbook(
    "results/big",
    """
    workload: {items: [1, 2, 3, 4, 5, 6]}
    workflow:
      - step: work
        loop: {in: "{{ items }}", iterator: x, spec: {mode: parallel, max_in_flight: 2}}
        tool:
          kind: python
          input: {x: "{{ iter.x }}"}
          code: |
            if x == 4:
                raise ValueError("four")
            result = {"x": x, "square": x * x}
        spec: {policy: {failure: {mode: best_effort}}}
        next: {arcs: [{step: total, when: "{{ work.stats.failed == 1 }}"}]}
      - step: total
        tool:
          kind: python
          input: {rs: "{{ work.results }}", n: "{{ work | length }}", first: "{{ work[0].square }}"}
          code: "result = {'sum': sum(r['square'] for r in rs if r), 'n': n, 'first': first, 'gap': rs[3]}"
        next: {arcs: [{step: again}]}
      - step: again
        loop: {in: "{{ items }}", iterator: y, spec: {mode: sequential}}
        tool: {kind: python, input: {y: "{{ iter.y }}"}, code: "result = y + 100"}
    """,
)


@pytest.fixture(scope="module")
def cluster(pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(pg_database, tmp_path_factory.mktemp("results"), env=LIMIT) as running:
        yield running


def noetl(cluster: Cluster, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**cluster.env, **LIMIT}
    return subprocess.run(
        [sys.executable, "-m", "noetl", *args], capture_output=True, text=True, timeout=120, env=env, cwd=root
    )


def test_a_loop_beyond_the_inline_limit_gives_the_same_outcome_on_both_runtimes(
    cluster: Cluster, tmp_path: Path
) -> None:
    file = tmp_path / "big.yaml"
    file.write_text(BIG_LOOP)
    outcomes, logs = {}, {}
    for runtime in ("local", "distributed"):
        events_file = tmp_path / f"{runtime}.jsonl"
        proc = noetl(
            cluster, tmp_path, "run", str(file), "--runtime", runtime, "--json", "--events", str(events_file)
        )
        assert proc.returncode == 0, f"{runtime}: {proc.stderr}"
        outcomes[runtime] = json.loads(proc.stdout)
        logs[runtime] = [
            ev.Event.from_dict(json.loads(line)) for line in events_file.read_text().splitlines()
        ]
    local, remote = outcomes["local"], outcomes["distributed"]
    assert {k: remote[k] for k in COMPARED} == {k: local[k] for k in COMPARED}

    squares = [{"x": x, "square": x * x} if x != 4 else None for x in range(1, 7)]
    assert local["step_results"]["work"] == {
        "results": squares,
        "stats": {"total": 6, "succeeded": 5, "failed": 1},
    }
    assert local["step_results"]["total"] == {"sum": 1 + 4 + 9 + 25 + 36, "n": 6, "first": 1, "gap": None}
    assert local["final_result"]["results"] == [y + 100 for y in range(1, 7)]

    for runtime, log in logs.items():
        done = [e for e in log if e.name == ev.LOOP_DONE]
        assert [set(e.data["result"]["results"]) for e in done] == [{"$results"}, {"$results"}], runtime
        # the folded state (what any deciding process holds) has no per-iteration results
        state = fold(e for e in log if e.data.get("execution_id", remote["execution_id"]) is not None)
        assert all(not found for found in state.loop_results.values()), runtime


def test_the_api_hydrates_an_executions_result(cluster: Cluster, tmp_path: Path) -> None:
    file = tmp_path / "big.yaml"
    file.write_text(BIG_LOOP)
    assert noetl(cluster, tmp_path, "catalog", "register", str(file)).returncode == 0
    with httpx.Client(base_url=cluster.url, timeout=30) as http:
        started = http.post("/api/execute", json={"path": "results/big"}).json()
        execution_id = started["execution_id"]

        def finished() -> dict[str, object] | None:
            found: dict[str, object] = http.get(f"/api/executions/{execution_id}/status").json()
            return found if found["status"] != "RUNNING" else None

        status = wait_until(finished, "the execution to finish")
        detail = http.get(f"/api/executions/{execution_id}", params={"include_events": "false"}).json()
    expected = {"results": [y + 100 for y in range(1, 7)], "stats": {"total": 6, "succeeded": 6, "failed": 0}}
    assert status["status"] == "COMPLETED" and status["result"] == expected
    assert detail["result"] == expected


def test_routing_cannot_read_a_spilled_loops_results_and_says_why(tmp_path: Path) -> None:
    file = tmp_path / "route.yaml"
    file.write_text(
        playbook(
            "results/route",
            """
            workflow:
              - step: work
                loop: {in: [1, 2, 3, 4], iterator: x}
                tool: {kind: noop}
                set: {ctx.n: "{{ work.results | length }}"}
            """,
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOETL_")} | LIMIT
    proc = subprocess.run(
        [sys.executable, "-m", "noetl", "run", str(file), "--json"], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 1, proc.stderr
    error = json.loads(proc.stdout)["error"]
    assert error["step"] == "work"
    assert "kept in the result store" in error["message"] and "stats" in error["message"]
