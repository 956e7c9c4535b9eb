"""The UI's read APIs and re-runs against a real server and worker: keyset pages and filters, the
per-execution snapshot, the event stream, the change stream, step details, re-run (same inputs, and
from a step), and the UI files with their content security policy."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import psycopg
import pytest

from .conftest import SERVICE_TOKEN, UiCluster, sse_events

AUTH = {"Authorization": f"Bearer {SERVICE_TOKEN}"}


@pytest.fixture(scope="module")
def failed_demo(ui_cluster: UiCluster) -> str:
    execution_id = ui_cluster.execute("demo/ui_demo")
    assert ui_cluster.wait(execution_id)["status"] == "FAILED"
    return execution_id


def _seed(database_url: str, count: int) -> list[int]:
    """``count`` finished executions under bulk/ (the projection rows a list page reads)."""
    ids = [10_000 + n for n in range(count)]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO noetl.execution (execution_id, path, status, error, created_at)
            SELECT i, CASE WHEN i %% 3 = 0 THEN 'bulk/team_a/job' ELSE 'bulk/team_b/job' END,
                   CASE WHEN i %% 5 = 0 THEN 'FAILED' ELSE 'COMPLETED' END,
                   CASE WHEN i %% 5 = 0 THEN json_build_object('message', 'disk full on node ' || i) END,
                   now() - make_interval(mins => (%(n)s - (i - 10000))::integer)
            FROM unnest(%(ids)s::bigint[]) AS i
            """,
            {"ids": ids, "n": count},
        )
    return ids


def test_search_pages_with_a_keyset_cursor_without_gaps_or_repeats(ui_cluster: UiCluster) -> None:
    ids = _seed(ui_cluster.cluster.database_url, 125)
    seen: list[int] = []
    cursor = None
    while True:
        params = {"path_prefix": "bulk/", "limit": 50, **({"cursor": cursor} if cursor else {})}
        page = ui_cluster.ok("GET", "executions/search", params=params)
        seen += [int(e["execution_id"]) for e in page["executions"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)


def test_search_filters_status_prefix_glob_text_and_time(ui_cluster: UiCluster) -> None:
    def ids(**params: Any) -> set[int]:
        page = ui_cluster.ok("GET", "executions/search", params={"limit": 500, **params})
        return {int(e["execution_id"]) for e in page["executions"]}

    failed = ids(status="FAILED", path_prefix="bulk/")
    assert failed and all(i % 5 == 0 for i in failed)
    assert ids(path_glob="bulk/team_a/*") == {i for i in range(10_000, 10_125) if i % 3 == 0}
    assert ids(q="node 10005") == {10005}
    assert ids(q="10007") == {10007}
    newest = ids(path_prefix="bulk/", since="2000-01-01T00:00:00Z")
    assert len(newest) == 125
    assert ids(path_prefix="bulk/", until="2000-01-01T00:00:00Z") == set()
    assert ids(path_prefix="bulk_") == set()  # '_' is literal, not LIKE's wildcard


def test_search_refuses_an_unknown_status(ui_cluster: UiCluster) -> None:
    response = ui_cluster.api("GET", "executions/search", params={"status": "DONE"})
    assert response.status_code == 400
    assert "unknown status 'DONE'" in response.text


def test_search_marks_failed_calls(ui_cluster: UiCluster, failed_demo: str) -> None:
    page = ui_cluster.ok("GET", "executions/search", params={"path_prefix": "demo/"})
    row = next(e for e in page["executions"] if e["execution_id"] == failed_demo)
    assert any(m["kind"] == "warning" and "failed call" in m["text"] for m in row["markers"])


def test_snapshot_has_the_graph_and_per_step_counts(ui_cluster: UiCluster, failed_demo: str) -> None:
    snap = ui_cluster.ok("GET", f"executions/{failed_demo}/snapshot")
    assert [n["id"] for n in snap["graph"]["nodes"]] == ["start", "fanout", "check"]
    assert {(e["from"], e["to"]) for e in snap["graph"]["edges"]} == {
        ("start", "fanout"),
        ("fanout", "check"),
    }
    fanout = snap["steps"]["fanout"]
    assert (fanout["completed"], fanout["failed"], fanout["loop_size"]) == (6, 0, 6)
    assert fanout["closing"] == "loop.done:COMPLETED"
    assert snap["steps"]["check"]["closing"] == "step.exit:FAILED"
    assert snap["last_event_id"] == snap["execution"]["last_event_id"] > 0


def test_stream_replays_then_ends_with_every_event_once(ui_cluster: UiCluster) -> None:
    execution_id = ui_cluster.execute("demo/ui_demo", {"items": 9})
    url = f"{ui_cluster.url}/api/executions/{execution_id}/stream"
    with httpx.stream("GET", url, headers=AUTH, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        got = sse_events(response)
    ids = [e["event_id"] for name, batch in got if name == "events" for e in batch]
    assert ids == list(range(1, len(ids) + 1))
    assert got[-1] == ("end", {"status": "FAILED"})
    final = ui_cluster.ok("GET", f"executions/{execution_id}?include_events=false")
    assert ids[-1] == final["last_event_id"]


def test_stream_resumes_after_a_cursor(ui_cluster: UiCluster, failed_demo: str) -> None:
    url = f"{ui_cluster.url}/api/executions/{failed_demo}/stream"
    with httpx.stream("GET", url, headers={**AUTH, "Last-Event-ID": "30"}, timeout=30) as response:
        got = sse_events(response)
    ids = [e["event_id"] for name, batch in got if name == "events" for e in batch]
    assert ids and ids[0] == 31


def test_step_detail_lists_errors_first_with_the_definition(ui_cluster: UiCluster, failed_demo: str) -> None:
    detail = ui_cluster.ok("GET", f"executions/{failed_demo}/steps/check")
    assert detail["definition"]["tasks"][0]["kind"] == "python"
    first = detail["outcomes"][0]
    assert first["event_type"] == "call.error"
    assert "the check failed for first" in json.dumps(first["data"])


def test_log_filters_by_type_and_step_newest_first(ui_cluster: UiCluster, failed_demo: str) -> None:
    page = ui_cluster.ok(
        "GET", f"executions/{failed_demo}/log", params={"event_type": "call.done", "step": "fanout"}
    )
    events = page["events"]
    assert len(events) == 6
    assert all(e["event_type"] == "call.done" and e["step"] == "fanout" for e in events)
    assert [e["event_id"] for e in events] == sorted((e["event_id"] for e in events), reverse=True)


def test_timeline_lists_each_command_with_its_times(ui_cluster: UiCluster, failed_demo: str) -> None:
    timeline = ui_cluster.ok("GET", f"executions/{failed_demo}/timeline")
    fanout = [c for c in timeline["commands"] if c["step"] == "fanout"]
    assert sorted(c["idx"] for c in fanout) == list(range(6))
    assert all(c["started"] <= c["ended"] and c["outcome"] == "command.completed" for c in fanout)


def test_rerun_with_the_same_inputs(ui_cluster: UiCluster) -> None:
    original = ui_cluster.execute("demo/ui_demo", {"fail": False, "label": "second"})
    assert ui_cluster.wait(original)["status"] == "COMPLETED"
    again = ui_cluster.ok("POST", f"executions/{original}/rerun", json={})
    assert again["rerun_of"] == original
    row = ui_cluster.wait(again["execution_id"])
    assert row["status"] == "COMPLETED"
    assert row["payload"] == {"fail": False, "label": "second"}
    snap = ui_cluster.ok("GET", f"executions/{again['execution_id']}/snapshot")
    assert snap["rerun_of"] == original and snap["resume"] is None


def test_rerun_from_a_step_skips_the_steps_before_it_and_carries_their_results(
    ui_cluster: UiCluster, failed_demo: str
) -> None:
    again = ui_cluster.ok("POST", f"executions/{failed_demo}/rerun", json={"from_step": "check"})
    new_id = again["execution_id"]
    ui_cluster.wait(new_id)
    log = ui_cluster.ok("GET", f"executions/{new_id}/events", params={"limit": 1000})["events"]
    entered = [e["step"] for e in log if e["event_type"] == "step.enter"]
    assert entered == ["check"]
    error = next(e for e in log if e["event_type"] == "call.error")
    # the check rendered start's label and fanout's squares from the original run
    assert "the check failed for first: 55 is not" in json.dumps(error["data"])
    snap = ui_cluster.ok("GET", f"executions/{new_id}/snapshot")
    assert snap["resume"] == {"from_step": "check", "carried": ["fanout", "start"]}


def test_rerun_from_an_unknown_step_is_refused(ui_cluster: UiCluster, failed_demo: str) -> None:
    response = ui_cluster.api("POST", f"executions/{failed_demo}/rerun", json={"from_step": "nope"})
    assert response.status_code == 400
    assert "step 'nope' is not in playbook demo/ui_demo" in response.text


def test_change_stream_reports_new_and_finished_executions(ui_cluster: UiCluster) -> None:
    url = f"{ui_cluster.url}/api/executions/changes"
    with httpx.stream("GET", url, headers=AUTH, params={"path_prefix": "ops/"}, timeout=60) as response:
        lines = response.iter_lines()
        assert next(lines) == "event: hello"
        execution_id = ui_cluster.execute("ops/ui_hello")
        deadline = time.monotonic() + 60
        statuses: list[str] = []
        name = ""
        for line in lines:
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:") and name == "changes":
                for item in json.loads(line[5:]):
                    assert item["path"].startswith("ops/")
                    if item["execution_id"] == execution_id:
                        statuses.append(item["status"])
                if set(statuses) & {"COMPLETED", "FAILED", "CANCELLED"}:
                    break
            assert time.monotonic() < deadline, f"no final status for {execution_id} within 60 s"
    assert statuses[-1] == "COMPLETED"


def test_catalog_graph(ui_cluster: UiCluster) -> None:
    graph = ui_cluster.ok("POST", "catalog/graph", json={"path": "demo/ui_demo"})
    assert [n["id"] for n in graph["nodes"]] == ["start", "fanout", "check"]
    assert graph["nodes"][1]["loop"] == {"mode": "parallel", "iterator": "n"}


def test_ui_files_are_served_with_a_strict_content_security_policy(ui_cluster: UiCluster) -> None:
    page = httpx.get(f"{ui_cluster.url}/ui/", timeout=10)
    assert page.status_code == 200 and '<main id="app">' in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    script = httpx.get(f"{ui_cluster.url}/ui/assets/app.js", timeout=10)
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert httpx.get(f"{ui_cluster.url}/ui/assets/../settings.py", timeout=10).status_code == 404


def test_no_ui_asset_assigns_html() -> None:
    from noetl.server.ui import ASSETS

    for script in ASSETS.glob("*.js"):
        text = script.read_text()
        assert "innerHTML" not in text and "outerHTML" not in text and "insertAdjacentHTML" not in text, (
            script
        )
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", ""), script
        assert "https://" not in text, script


def test_the_server_limits_lists_to_the_paths_the_gateway_forwards(
    ui_cluster: UiCluster, failed_demo: str
) -> None:
    """Defence in depth: a principal limited to demo/* gets only demo/ rows even when it asks
    the server for everything (the gateway also rewrites ``path_glob``)."""
    scoped = {"X-NoETL-Principal": "key:someone", "X-NoETL-Role": "viewer", "X-NoETL-Paths": '["demo/*"]'}
    page = ui_cluster.ok("GET", "executions/search", params={"path_glob": "*", "limit": 500}, headers=scoped)
    paths = {e["path"] for e in page["executions"]}
    assert paths == {"demo/ui_demo"}
    nothing = {**scoped, "X-NoETL-Paths": "[]"}
    assert ui_cluster.ok("GET", "executions/search", headers=nothing)["executions"] == []
