"""Bounded templates (issue 10, item 8), on real server and worker processes.

A template that would loop 10^10 times or build a gigabyte string fails its step with an error that
names the step and the field, within the step's timeout; while it renders, an unrelated execution on
the same worker completes; the server refuses such a template in a workload too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from support.cluster import Cluster, running_cluster, wait_until

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")
NESTED = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"


@pytest.fixture(scope="module")
def cluster(pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("budget")
    with running_cluster(
        pg_database, root, workers=1, concurrency=4, env={"NOETL_LOG_LEVEL": "info"}
    ) as running:
        yield running


def register(cluster: Cluster, path: str, body: str) -> None:
    name = path.rsplit("/", 1)[-1]
    content = f"apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {{name: {name}, path: {path}}}\n{body}"
    answer = httpx.post(f"{cluster.url}/api/catalog/register", json={"content": content}, timeout=30)
    assert answer.status_code == 200, answer.text


def start(cluster: Cluster, path: str) -> httpx.Response:
    return httpx.post(f"{cluster.url}/api/execute", json={"path": path, "payload": {}}, timeout=60)


def status(cluster: Cluster, execution_id: str) -> dict[str, Any]:
    found: dict[str, Any] = httpx.get(f"{cluster.url}/api/executions/{execution_id}", timeout=10).json()
    return found


def finished(cluster: Cluster, execution_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        found = status(cluster, execution_id)
        return found if found["status"] in TERMINAL else None

    summary: dict[str, Any] = wait_until(done, f"execution {execution_id} to end")
    return summary


def message(summary: dict[str, Any]) -> str:
    error = summary.get("error") or {}
    return str(error.get("message") if isinstance(error, dict) else error)


HEAVY = f"""
workflow:
  - step: start
    tool:
      kind: python
      input: {{x: "{NESTED}"}}
      code: "result = 1"
      spec:
        timeout: 1
        policy:
          rules:
            - when: "{{{{ output.status == 'error' }}}}"
              then: {{do: retry, attempts: 12, delay: 0.01}}
"""
LIGHT = """
workflow:
  - step: start
    tool: {kind: python, input: {v: 1}, code: "result = v + 1"}
    next: [{step: second}]
  - step: second
    tool: {kind: python, input: {v: "{{ start }}"}, code: "result = v + 1"}
"""


def test_a_heavy_template_fails_its_step_while_other_executions_progress(cluster: Cluster) -> None:
    register(cluster, "budget/heavy", HEAVY)
    register(cluster, "budget/light", LIGHT)
    heavy = start(cluster, "budget/heavy").json()["execution_id"]

    def rendering() -> bool:
        with psycopg.connect(cluster.database_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM noetl.command WHERE execution_id = %s AND status = 'leased'",
                (int(heavy),),
            ).fetchone()
        return row is not None and row[0] > 0

    wait_until(rendering, "the heavy step to start rendering")
    light = finished(cluster, start(cluster, "budget/light").json()["execution_id"])
    assert light["status"] == "COMPLETED", light
    # the heavy execution renders 12 attempts of about a second each: it is still at it
    assert status(cluster, heavy)["status"] not in TERMINAL

    summary = finished(cluster, heavy)
    assert summary["status"] == "FAILED"
    text = message(summary)
    assert "step 'start'" in text, text
    assert "render budget" in text or "timeout" in text, text
    assert "input" in text, text


@pytest.mark.parametrize(
    ("template", "said"),
    [
        ("{{ ('a' * 10**9)|length }}", "a repeated sequence of 1,000,000,000"),
        ("{{ 'a'.ljust(10**9)|length }}", "width given to 'ljust'"),
        ("{{ range(10**9)|list|length }}", "Range too big"),
        ("{{ '{:>1000000000}'.format('x')|length }}", "formatting width"),
    ],
)
def test_oversized_values_are_refused_before_they_are_built(
    cluster: Cluster, template: str, said: str
) -> None:
    path = f"budget/size_{abs(hash(template))}"
    register(
        cluster,
        path,
        f'workflow:\n  - step: start\n    tool: {{kind: python, input: {{n: "{template}"}}, code: "result = n"}}\n',
    )
    summary = finished(cluster, start(cluster, path).json()["execution_id"])
    assert summary["status"] == "FAILED", summary
    text = message(summary)
    assert said in text and "input 'n'" in text, text


def test_the_server_bounds_a_template_it_renders(cluster: Cluster) -> None:
    """The server renders a first step's loop (decide): the budget bounds it there too."""
    body = (
        "workflow:\n  - step: start\n"
        f'    loop: {{in: "{NESTED}[1, 2]", iterator: i}}\n'
        '    tool: {kind: python, input: {i: "{{ i }}"}, code: "result = i"}\n'
    )
    register(cluster, "budget/server_side", body)
    answer = start(cluster, "budget/server_side")
    if answer.status_code == 200:
        summary = finished(cluster, answer.json()["execution_id"])
        assert summary["status"] == "FAILED", summary
        text = message(summary)
    else:
        assert 400 <= answer.status_code < 500, answer.text
        text = answer.text
    assert "render budget" in text, text
    assert httpx.get(f"{cluster.url}/health", timeout=5).status_code == 200
