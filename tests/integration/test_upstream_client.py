"""The upstream ``noetl`` client's requests, as it sends them, against a real server and worker.

Users point their existing client (``noetl --server-url URL ...``) at our server. The bodies below
are the ones REFERENCE §7-8 records for that client, written out by hand (the client itself is a
native binary that is not a dependency of this project): register with base64 ``content`` and a
``resource_type``, list and fetch catalog entries, execute by ``path``/``version`` or by a
``catalog_id`` given as a string, poll ``/status``, cancel with ``{reason, cascade}``, store a
credential and read it back with ``include_data=true``. Every answer is checked for the fields
upstream returns (ids as strings). A legacy playbook is registered too: the catalog keeps its text
as sent and the execution runs its canonical rewrite on a worker.
"""

from __future__ import annotations

import base64
import textwrap
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from psycopg.conninfo import conninfo_to_dict

from support.cluster import Cluster, running_cluster, wait_until

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}

GREETING = textwrap.dedent(
    """\
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata:
      name: greeting
      path: upstream/greeting
    workload:
      who: world
    workflow:
      - step: start
        tool: {kind: python, input: {who: "{{ who }}"}, code: "result = {'text': 'hello ' + who}"}
        next: {arcs: [{step: end}]}
      - step: end
        tool: {kind: noop}
    """
)

LEGACY = textwrap.dedent(
    """\
    apiVersion: noetl.io/v1
    kind: Playbook
    metadata: {name: legacy_greeting, path: upstream/legacy}
    vars: {n: 2}
    workflow:
      - step: start
        type: python
        data: {n: "{{ n }}"}
        code: |
          def main(n):
              return {"double": n * 2}
        next:
          - when: "{{ result.double > 3 }}"
            then: [{step: big}]
          - else: [{step: small}]
      - step: big
        tool: python
        args: {d: "{{ start.data.double }}"}
        code: "result = {'size': 'big', 'd': d}"
      - step: small
    """
)

SLOW = textwrap.dedent(
    """\
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: slow, path: upstream/slow}
    workflow:
      - step: start
        loop: {in: "{{ range(200) | list }}", iterator: i, spec: {mode: sequential}}
        tool: {kind: python, code: "import time\\ntime.sleep(0.05)\\nresult = 1"}
    """
)

WITH_CREDENTIAL = textwrap.dedent(
    """\
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: uses_credential, path: upstream/uses_credential}
    workload: {pg_auth: pg_upstream}
    workflow:
      - step: start
        tool: {kind: postgres, auth: "{{ pg_auth }}", command: "select 41 + 1 as answer"}
    """
)


@pytest.fixture(scope="module")
def cluster(pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(pg_database, tmp_path_factory.mktemp("upstream"), workers=1) as running:
        yield running


@pytest.fixture(scope="module")
def http(cluster: Cluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cluster.url, timeout=30.0) as client:
        yield client


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def register(http: httpx.Client, text: str) -> dict[str, Any]:
    response = http.post("/api/catalog/register", json={"content": b64(text), "resource_type": "Playbook"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def final_status(http: httpx.Client, execution_id: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        body: dict[str, Any] = http.get(f"/api/executions/{execution_id}/status").json()
        return body if body["status"] in TERMINAL else None

    found: dict[str, Any] = wait_until(probe, f"execution {execution_id} to finish")
    return found


def test_register_list_and_fetch_answer_in_upstream_shapes(http: httpx.Client) -> None:
    first = register(http, GREETING)
    assert {"status", "message", "path", "version", "catalog_id", "kind"} <= set(first)
    assert (first["path"], first["version"], first["kind"]) == ("upstream/greeting", 1, "Playbook")
    assert isinstance(first["catalog_id"], str) and first["catalog_id"].isdigit()
    assert register(http, GREETING)["version"] == 2  # every registration is a new version

    listed = http.post("/api/catalog/list", json={"resource_type": "Playbook"})
    assert listed.status_code == 200, listed.text
    entries = [e for e in listed.json()["entries"] if e["path"] == "upstream/greeting"]
    assert sorted(e["version"] for e in entries) == [1, 2]
    for entry in entries:
        assert {"catalog_id", "path", "version", "kind", "content", "layout", "payload", "meta"} <= set(entry)
        assert entry["payload"] == {"who": "world"} and entry["content"] == GREETING

    latest = http.post("/api/catalog/resource", json={"path": "upstream/greeting", "version": "latest"})
    assert latest.status_code == 200 and latest.json()["version"] == 2
    by_id = http.post("/api/catalog/resource", json={"catalog_id": first["catalog_id"]})
    assert by_id.status_code == 200 and (by_id.json()["version"], by_id.json()["content"]) == (1, GREETING)
    missing = http.post("/api/catalog/resource", json={"path": "upstream/none", "version": "latest"})
    assert missing.status_code == 404


def test_execute_by_path_and_by_string_catalog_id_then_poll_status(http: httpx.Client) -> None:
    entry = register(http, GREETING.replace("upstream/greeting", "upstream/greeting2"))
    started = http.post(
        "/api/execute", json={"path": "upstream/greeting2", "version": 1, "payload": {"who": "client"}}
    )
    assert started.status_code == 200, started.text
    body = started.json()
    assert {"execution_id", "status", "commands_generated"} <= set(body)
    assert isinstance(body["execution_id"], str) and body["commands_generated"] >= 1
    status = final_status(http, body["execution_id"])
    assert status["status"] == "COMPLETED", status
    assert status["execution_id"] == body["execution_id"] and status["is_cancelled"] is False
    assert status["progress"]["total_steps"] == 2 and status["progress"]["completed_steps"] == 2
    assert status["completed_steps"] == ["start", "end"] and status["completed"] is True
    assert status["variables"]["who"] == "client"

    again = http.post("/api/execute", json={"catalog_id": entry["catalog_id"], "workload": {"who": "id"}})
    assert again.status_code == 200, again.text
    detail = http.get(f"/api/executions/{again.json()['execution_id']}")
    assert detail.status_code == 200
    assert final_status(http, again.json()["execution_id"])["variables"]["who"] == "id"


def test_legacy_playbook_is_kept_as_sent_and_runs_its_rewrite(http: httpx.Client) -> None:
    registered = register(http, LEGACY)
    assert registered["path"] == "upstream/legacy"
    assert any("is legacy; rewritten to" in w for w in registered["warnings"])
    stored = http.post("/api/catalog/resource", json={"catalog_id": registered["catalog_id"]}).json()
    assert stored["content"] == LEGACY
    started = http.post("/api/execute", json={"path": "upstream/legacy", "payload": {"n": 5}}).json()
    status = final_status(http, started["execution_id"])
    assert status["status"] == "COMPLETED", status
    assert status["completed_steps"] == ["start", "big"]
    assert status["result"] == {"size": "big", "d": 10}


def test_cancel_with_reason_and_cascade(http: httpx.Client) -> None:
    register(http, SLOW)
    started = http.post("/api/execute", json={"path": "upstream/slow", "payload": {}}).json()
    execution_id = started["execution_id"]
    wait_until(
        lambda: http.get(f"/api/executions/{execution_id}/status").json()["progress"]["running_steps"],
        "the loop to run",
    )
    cancelled = http.post(
        f"/api/executions/{execution_id}/cancel", json={"reason": "stopped by the client", "cascade": True}
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["execution_id"] == execution_id
    status = final_status(http, execution_id)
    assert status["status"] == "CANCELLED" and status["is_cancelled"] is True
    check = http.get(f"/api/executions/{execution_id}/cancellation-check").json()
    assert check == {"execution_id": execution_id, "is_cancelled": True, "status": "CANCELLED"}


def test_credential_stored_read_with_include_data_and_used_by_a_worker(
    http: httpx.Client, pg_database: str
) -> None:
    # libpq's reading of the URL: a unix-socket URL (``postgresql://u@/db?host=/run/pg``, as the
    # embedded server gives) has its socket directory as ``host``, which a credential takes as is.
    url = conninfo_to_dict(pg_database)
    data = {
        "db_host": str(url.get("host") or "127.0.0.1"),
        "db_port": str(url.get("port") or 5432),
        "db_user": str(url.get("user") or "postgres"),
        "db_password": str(url.get("password") or ""),
        "db_name": str(url["dbname"]),
    }
    body = {
        "name": "pg_upstream",
        "type": "postgres",
        "data": data,
        "tags": ["e2e"],
        "description": "test db",
    }
    saved = http.post("/api/credentials", json=body)
    assert saved.status_code == 200, saved.text
    without = http.get("/api/credentials/pg_upstream").json()
    assert "data" not in without and without["name"] == "pg_upstream" and without["type"] == "postgres"
    full = http.get("/api/credentials/pg_upstream", params={"include_data": "true"}).json()
    assert full["data"] == data and full["tags"] == ["e2e"]

    register(http, WITH_CREDENTIAL)
    started = http.post("/api/execute", json={"path": "upstream/uses_credential", "payload": {}}).json()
    status = final_status(http, started["execution_id"])
    assert status["status"] == "COMPLETED", status
    assert status["result"]["rows"] == [{"answer": 42}]
