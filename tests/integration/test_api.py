"""The server's HTTP API against a real PostgreSQL (REFERENCE §7 paths and shapes).

Requests go through ``httpx.ASGITransport`` into the app with its lifespan running, so the
orchestrator loop and the reaper run in the background as in production. Where a worker is needed
the test acts as a remote one over HTTP: claim, build the outcome events exactly as a worker does
(``noetl.runtime.report.outcome_events``), report. One test starts the real server process.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from noetl.engine import events as ev
from noetl.runtime.report import outcome_events
from noetl.runtime.runner import Outcome

from . import server_fixtures
from .server_fixtures import eventually

api = server_fixtures.api
server_settings = server_fixtures.server_settings
server_process = server_fixtures.server_process

pytestmark = pytest.mark.asyncio(loop_scope="module")

TWO_STEPS = textwrap.dedent(
    """\
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata:
      name: two_steps
      path: tests/api/{name}
    workload:
      who: world
    workflow:
      - step: start
        tool: {{kind: noop}}
        next:
          arcs:
            - step: finish
      - step: finish
        tool: {{kind: noop}}
    """
)

BROKEN = textwrap.dedent(
    """\
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata:
      name: broken
      path: tests/api/broken
    workflow:
      - step: start
        tool:
          kind: nosuchtool
    """
)


def playbook(name: str) -> str:
    return TWO_STEPS.format(name=name)


async def register(api: httpx.AsyncClient, name: str) -> dict[str, Any]:
    response = await api.post("/api/catalog/register", json={"content": playbook(name)})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def start(api: httpx.AsyncClient, name: str, **request: Any) -> dict[str, Any]:
    await register(api, name)
    response = await api.post("/api/execute", json={"path": f"tests/api/{name}", **request})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def claim_for(api: httpx.AsyncClient, execution_id: str, worker: str) -> dict[str, Any]:
    """Claim (as a remote worker) the ready command of this execution; other claims are released."""

    async def probe() -> dict[str, Any] | None:
        response = await api.post(
            "/api/commands/claim", json={"worker_id": worker, "pools": ["default"], "limit": 100}
        )
        assert response.status_code == 200, response.text
        leases = response.json()["commands"]
        others = [c["command_id"] for c in leases if c["execution_id"] != execution_id]
        if others:
            released = await api.post(
                "/api/commands/release", json={"worker_id": worker, "command_ids": others}
            )
            assert released.json() == {"released": len(others)}
        mine = [c for c in leases if c["execution_id"] == execution_id]
        return mine[0] if mine else None

    return await eventually(probe, f"a command of execution {execution_id}")


def report_of(lease: dict[str, Any], worker: str, result: Any) -> dict[str, Any]:
    """The report a worker sends for a lease that ran fine with ``result``."""
    command = ev.Command(
        lease["command_id"], lease["execution_id"], lease["step"], lease["context"], lease["index"]
    )
    outcome = Outcome("ok", result, None, {}, 1, 0.5)
    events = outcome_events(command, outcome, time.time())
    return {
        "execution_id": lease["execution_id"],
        "command_id": lease["command_id"],
        "attempt": lease["attempt"],
        "worker_id": worker,
        "ok": True,
        "events": [e.to_dict(lease["execution_id"]) for e in events],
    }


async def status_of(api: httpx.AsyncClient, execution_id: str) -> dict[str, Any]:
    response = await api.get(f"/api/executions/{execution_id}/status")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_status(api: httpx.AsyncClient, execution_id: str, wanted: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        body = await status_of(api, execution_id)
        return body if body["status"] == wanted else None

    return await eventually(probe, f"execution {execution_id} to be {wanted}")


# -- health and OpenAPI -----------------------------------------------------------------------------


async def test_health_and_openapi_list_the_api(api: httpx.AsyncClient) -> None:
    for path in ("/health", "/api/health"):
        response = await api.get(path)
        assert (response.status_code, response.json()) == (200, {"status": "ok"})
    paths = (await api.get("/openapi.json")).json()["paths"]
    expected = {
        "/api/catalog/register": "post",
        "/api/catalog/list": "post",
        "/api/catalog/resource": "post",
        "/api/execute": "post",
        "/api/executions": "get",
        "/api/executions/{execution_id}": "get",
        "/api/executions/{execution_id}/events": "get",
        "/api/executions/{execution_id}/status": "get",
        "/api/executions/{execution_id}/cancel": "post",
        "/api/executions/{execution_id}/cancellation-check": "get",
        "/api/events": "post",
        "/api/events/batch": "post",
        "/api/commands/claim": "post",
        "/api/commands/heartbeat": "post",
        "/api/worker/pool/register": "post",
        "/api/worker/pool/heartbeat": "post",
        "/api/worker/pool/deregister": "delete",
        "/api/worker/pools": "get",
        "/api/credentials": "post",
        "/api/credentials/{name}": "delete",
        "/api/replay/state": "get",
        "/api/queue": "get",
    }
    missing = {p: m for p, m in expected.items() if m not in paths.get(p, {})}
    assert missing == {}


# -- catalog ----------------------------------------------------------------------------------------


async def test_register_text_and_base64_make_versions(api: httpx.AsyncClient) -> None:
    text = playbook("versions")
    first = (await api.post("/api/catalog/register", json={"content": text})).json()
    encoded = base64.b64encode(text.encode()).decode()
    second = (
        await api.post("/api/catalog/register", json={"content": encoded, "resource_type": "Playbook"})
    ).json()
    assert (first["status"], first["path"], first["version"], first["kind"]) == (
        "success",
        "tests/api/versions",
        1,
        "Playbook",
    )
    assert (second["path"], second["version"]) == ("tests/api/versions", 2)
    assert isinstance(first["catalog_id"], str) and first["catalog_id"] != second["catalog_id"]

    listed = (await api.post("/api/catalog/list", json={"path": "tests/api/versions"})).json()["entries"]
    assert [(e["version"], e["catalog_id"]) for e in listed] == [
        (1, first["catalog_id"]),
        (2, second["catalog_id"]),
    ]
    assert listed[1]["content"] == text  # the decoded YAML is stored, not the base64

    by_id = (await api.post("/api/catalog/resource", json={"catalog_id": first["catalog_id"]})).json()
    assert (by_id["version"], by_id["catalog_id"]) == (1, first["catalog_id"])
    latest = (
        await api.post("/api/catalog/resource", json={"path": "tests/api/versions", "version": "latest"})
    ).json()
    assert latest["version"] == 2
    pinned = (
        await api.post("/api/catalog/resource", json={"path": "tests/api/versions", "version": 1})
    ).json()
    assert pinned["catalog_id"] == first["catalog_id"]


async def test_invalid_playbook_is_422_with_line_and_step_and_nothing_is_stored(
    api: httpx.AsyncClient,
) -> None:
    for content in (BROKEN, base64.b64encode(BROKEN.encode()).decode()):
        response = await api.post("/api/catalog/register", json={"content": content})
        assert response.status_code == 422
        detail = response.json()["detail"]
        assert (detail["line"], detail["step"], detail["field"]) == (9, "start", "tool.kind")
        assert "nosuchtool" in detail["reason"]
    listed = (await api.post("/api/catalog/list", json={"path": "tests/api/broken"})).json()
    assert listed == {"entries": []}


async def test_bad_yaml_and_bad_requests_are_rejected(api: httpx.AsyncClient) -> None:
    bad_yaml = await api.post("/api/catalog/register", json={"content": "apiVersion: [unclosed\n"})
    assert bad_yaml.status_code == 422 and bad_yaml.json()["detail"]["line"] is not None
    no_content = await api.post("/api/catalog/register", json={})
    assert no_content.status_code == 422
    assert no_content.json()["detail"]["code"] == "invalid_request"
    neither = await api.post("/api/catalog/resource", json={})
    assert neither.status_code == 400


async def test_unknown_things_are_404_with_a_reason(api: httpx.AsyncClient) -> None:
    requests = [
        ("POST", "/api/catalog/resource", {"catalog_id": "12345"}),
        ("POST", "/api/catalog/resource", {"path": "tests/api/nowhere"}),
        ("POST", "/api/execute", {"path": "tests/api/nowhere"}),
        ("GET", "/api/executions/12345", None),
        ("GET", "/api/executions/12345/events", None),
        ("GET", "/api/executions/12345/status", None),
        ("POST", "/api/executions/12345/cancel", None),
        ("GET", "/api/replay/state?execution_id=12345", None),
        ("GET", "/api/credentials/nobody", None),
        ("DELETE", "/api/credentials/nobody", None),
        ("POST", "/api/worker/pool/heartbeat", {"worker_id": "ghost"}),
    ]
    for method, path, body in requests:
        response = await api.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["detail"]["reason"], (method, path)


async def test_oversized_body_is_413(api: httpx.AsyncClient, server_settings: Any) -> None:
    huge = "x" * (server_settings.max_body_bytes + 1)
    response = await api.post("/api/catalog/register", json={"content": huge})
    assert response.status_code == 413
    assert response.json()["detail"]["code"] == "http_413"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"content": "'
        for _ in range(server_settings.max_body_bytes // 1024 + 1):
            yield b"x" * 1024
        yield b'"}'

    streamed = await api.post(
        "/api/catalog/register", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    assert streamed.json()["detail"]["code"] == "http_413"


# -- executions -------------------------------------------------------------------------------------


async def test_execute_by_path_and_by_catalog_id(api: httpx.AsyncClient) -> None:
    registered = await register(api, "execute")
    by_path = await api.post("/api/execute", json={"path": "tests/api/execute", "payload": {"who": "path"}})
    by_id = await api.post(
        "/api/execute", json={"catalog_id": registered["catalog_id"], "workload": {"who": "id"}}
    )
    for response in (by_path, by_id):
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["status"], body["commands_generated"], body["catalog_id"]) == (
            "RUNNING",
            1,
            registered["catalog_id"],
        )
    detail = (await api.get(f"/api/executions/{by_path.json()['execution_id']}")).json()
    assert (detail["path"], detail["status"], detail["payload"]) == (
        "tests/api/execute",
        "RUNNING",
        {"who": "path"},
    )
    names = [e["event_type"] for e in detail["events"]]
    assert names[0] == ev.PLAYBOOK_INITIALIZED and ev.COMMAND_ISSUED in names
    assert detail["events"][0]["data"]["workload"]["who"] == "path"
    other = (await api.get(f"/api/executions/{by_id.json()['execution_id']}")).json()
    assert other["events"][0]["data"]["workload"]["who"] == "id"


async def test_execute_rejects_unknown_versions_and_bad_payloads(api: httpx.AsyncClient) -> None:
    await register(api, "payloads")
    missing = await api.post("/api/execute", json={"path": "tests/api/payloads", "version": 7})
    assert missing.status_code == 404
    not_a_map = await api.post("/api/execute", json={"path": "tests/api/payloads", "payload": [1, 2]})
    assert not_a_map.status_code == 422
    nothing = await api.post("/api/execute", json={"payload": {}})
    assert nothing.status_code == 400


async def test_executions_list_detail_and_event_pages(api: httpx.AsyncClient) -> None:
    started = await start(api, "listing")
    eid = started["execution_id"]
    listed = (
        await api.get("/api/executions", params={"path": "tests/api/listing", "status": "RUNNING"})
    ).json()
    assert [e["execution_id"] for e in listed["executions"]] == [eid]
    assert (listed["limit"], listed["offset"]) == (100, 0)
    assert (
        await api.get("/api/executions", params={"path": "tests/api/listing", "status": "FAILED"})
    ).json()["executions"] == []

    everything = (await api.get(f"/api/executions/{eid}/events")).json()
    total = len(everything["events"])
    assert total >= 3 and everything["has_more"] is False
    paged: list[dict[str, Any]] = []
    since = 0
    while True:
        page = (
            await api.get(f"/api/executions/{eid}/events", params={"since_event_id": since, "limit": 2})
        ).json()
        paged.extend(page["events"])
        since = page["next_since_event_id"]
        if not page["has_more"]:
            break
    assert paged == everything["events"]
    assert [e["event_id"] for e in paged] == list(range(1, total + 1))
    issued = (await api.get(f"/api/executions/{eid}/events", params={"event_type": ev.COMMAND_ISSUED})).json()
    assert [e["event_type"] for e in issued["events"]] == [ev.COMMAND_ISSUED]

    detail = (await api.get(f"/api/executions/{eid}", params={"page_size": 10, "page": 1})).json()
    assert detail["pagination"]["total_events"] == total and detail["pagination"]["has_more"] is False
    bare = (await api.get(f"/api/executions/{eid}", params={"include_events": "false"})).json()
    assert "events" not in bare and bare["execution_id"] == eid
    too_small = await api.get(f"/api/executions/{eid}", params={"page_size": 5})
    assert too_small.status_code == 422


async def test_a_run_driven_over_http_completes_and_replays(api: httpx.AsyncClient) -> None:
    worker = "remote-1"
    eid = (await start(api, "full_run"))["execution_id"]
    first = await claim_for(api, eid, worker)
    assert first["step"] == "start" and first["attempt"] == 1
    running = await status_of(api, eid)
    assert (running["current_step"], running["progress"]["total_steps"]) == ("start", 2)
    beat = await api.post(
        "/api/commands/heartbeat", json={"worker_id": worker, "command_ids": [first["command_id"], "gone:1"]}
    )
    assert beat.json() == {"lost": ["gone:1"]}

    report = report_of(first, worker, {"n": 1})
    assert (await api.post("/api/events", json=report)).json()["status"] == "accepted"
    assert (await api.post("/api/events", json=report)).json()["status"] == "duplicate"

    second = await claim_for(api, eid, worker)
    assert second["step"] == "finish"
    batch = {"reports": [report_of(second, worker, {"n": 2}), report_of(first, worker, {"n": 1})]}
    assert (await api.post("/api/events/batch", json=batch)).json() == {"accepted": 1, "duplicates": 1}

    done = await wait_status(api, eid, "COMPLETED")
    assert (done["completed"], done["failed"], done["is_cancelled"]) == (True, False, False)
    assert done["progress"]["completed_steps"] == 2 and done["progress"]["running_steps"] == 0
    assert done["result"] == {"n": 2}
    events = (await api.get(f"/api/executions/{eid}/events")).json()["events"]
    completed = [e for e in events if e["event_type"] == ev.COMMAND_COMPLETED]
    assert [e["step"] for e in completed] == ["start", "finish"]  # each recorded once

    replayed = (await api.get("/api/replay/state", params={"execution_id": eid})).json()
    again = (await api.get("/api/replay/state", params={"execution_id": eid})).json()
    assert replayed["checksum"] == again["checksum"] and replayed["state"] == again["state"]
    assert (replayed["status"], replayed["as_of_event_id"]) == ("COMPLETED", events[-1]["event_id"])
    assert replayed["state"]["final_result"] == {"n": 2}
    canonical = json.dumps(replayed["state"], sort_keys=True, separators=(",", ":"))
    assert hashlib.sha256(canonical.encode()).hexdigest() == replayed["checksum"]
    early = (await api.get("/api/replay/state", params={"execution_id": eid, "as_of_event_id": 2})).json()
    assert (early["as_of_event_id"], early["status"]) == (2, "RUNNING")
    assert early["checksum"] != replayed["checksum"]


async def test_cancel_then_cancel_again_is_409(api: httpx.AsyncClient) -> None:
    eid = (await start(api, "cancel"))["execution_id"]
    check = (await api.get(f"/api/executions/{eid}/cancellation-check")).json()
    assert (check["execution_id"], check["is_cancelled"]) == (eid, False)
    response = await api.post(f"/api/executions/{eid}/cancel", json={"reason": "test says stop"})
    assert response.status_code == 200, response.text
    assert response.json()["cancelled"] == [eid]
    done = await wait_status(api, eid, "CANCELLED")
    assert done["is_cancelled"] is True
    assert (await api.get(f"/api/executions/{eid}/cancellation-check")).json()["is_cancelled"] is True
    again = await api.post(f"/api/executions/{eid}/cancel", json={})
    assert again.status_code == 409
    assert (again.json()["detail"]["code"], again.json()["detail"]["status"]) == (
        "already_terminal",
        "CANCELLED",
    )


# -- credentials, workers, queue ---------------------------------------------------------------------


async def test_credentials_crud_keeps_data_secret_unless_asked(api: httpx.AsyncClient) -> None:
    secret = {"user": "app", "password": "s3cret"}
    body = {"name": "pg_main", "type": "postgres", "data": secret, "tags": ["db"], "description": "main db"}
    saved = await api.post("/api/credentials", json=body)
    assert saved.status_code == 200 and "data" not in saved.json()
    assert "s3cret" not in saved.text
    listed = await api.get("/api/credentials", params={"type": "postgres"})
    assert [c["name"] for c in listed.json()["credentials"]] == ["pg_main"]
    assert "s3cret" not in listed.text
    assert (await api.get("/api/credentials", params={"q": "nomatch"})).json()["credentials"] == []
    plain = (await api.get("/api/credentials/pg_main")).json()
    assert "data" not in plain and (plain["type"], plain["tags"]) == ("postgres", ["db"])
    full = (await api.get("/api/credentials/pg_main", params={"include_data": "true"})).json()
    assert full["data"] == secret

    replaced = await api.post("/api/credentials", json={**body, "data": {"user": "app", "password": "new"}})
    assert replaced.status_code == 200
    assert (await api.get("/api/credentials/pg_main?include_data=true")).json()["data"]["password"] == "new"
    assert (await api.delete("/api/credentials/pg_main")).json() == {"status": "deleted", "name": "pg_main"}
    assert (await api.get("/api/credentials/pg_main")).status_code == 404


async def test_worker_pool_register_heartbeat_list_deregister(api: httpx.AsyncClient) -> None:
    registered = await api.post(
        "/api/worker/pool/register",
        json={"name": "pool-a", "pools": ["default", "gpu"], "capacity": 4, "pid": 42},
    )
    assert registered.status_code == 200, registered.text
    worker_id = registered.json()["worker_id"]
    assert worker_id.startswith("pool-a-")
    assert (await api.post("/api/worker/pool/heartbeat", json={"worker_id": worker_id})).json()[
        "status"
    ] == "ok"
    workers = (await api.get("/api/worker/pools")).json()["workers"]
    mine = [w for w in workers if w["worker_id"] == worker_id]
    assert len(mine) == 1 and mine[0]["capacity"] == 4 and mine[0]["pools"] == ["default", "gpu"]
    named = await api.post("/api/worker/pool/register", json={"worker_id": "fixed-id", "name": "pool-b"})
    assert named.json()["worker_id"] == "fixed-id"
    gone = await api.request("DELETE", "/api/worker/pool/deregister", json={"worker_id": worker_id})
    assert gone.json() == {"status": "deregistered", "worker_id": worker_id}
    by_query = await api.post("/api/worker/pool/deregister", params={"worker_id": "fixed-id"})
    assert by_query.status_code == 200, by_query.text
    remaining = {w["worker_id"] for w in (await api.get("/api/worker/pools")).json()["workers"]}
    assert {worker_id, "fixed-id"}.isdisjoint(remaining)


async def test_a_silent_worker_is_listed_as_stale(api: httpx.AsyncClient, pg_database: str) -> None:
    import psycopg

    for name in ("silent", "alive"):
        await api.post("/api/worker/pool/register", json={"worker_id": name, "name": name})
    with psycopg.connect(pg_database, autocommit=True) as conn:  # as if it died ten minutes ago
        conn.execute(
            "UPDATE noetl.runtime SET heartbeat = now() - interval '10 minutes' WHERE worker_id = 'silent'"
        )
    listed = {w["worker_id"]: w["status"] for w in (await api.get("/api/worker/pools")).json()["workers"]}
    assert listed["silent"] == "stale"
    assert listed["alive"] != "stale"
    for name in ("silent", "alive"):
        await api.post("/api/worker/pool/deregister", params={"worker_id": name})


async def test_queue_depth_counts_ready_commands(api: httpx.AsyncClient) -> None:
    await start(api, "depth")
    pools = (await api.get("/api/queue")).json()["pools"]
    assert pools.get("default", 0) >= 1


# -- the real process ---------------------------------------------------------------------------------


async def test_real_server_process_serves_health_and_openapi(server_process: Any) -> None:
    url, proc = server_process
    async with httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/health")).json() == {"status": "ok"}
        spec = (await client.get("/openapi.json")).json()
        assert spec["info"]["title"] == "NoETL" and "/api/execute" in spec["paths"]
        registered = await client.post("/api/catalog/register", json={"content": playbook("process")})
        assert registered.status_code == 200 and registered.json()["version"] == 1
    proc.terminate()
    assert await asyncio.to_thread(proc.wait, 15) == 0


async def test_server_process_without_its_database_exits_1_with_one_line(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "NOETL_DATABASE_URL": "postgresql://noetl@127.0.0.1:1/none?connect_timeout=5",
        "NOETL_SERVER_PORT": str(server_fixtures.free_port()),
        "NOETL_DATA_DIR": str(tmp_path),
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "noetl.server.main"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "error:" in done.stderr and "PostgreSQL unavailable" in done.stderr
    assert "Traceback" not in done.stderr
