"""Input schemas in the catalog: ``GET /api/catalog/{path}/schema`` and ``/ui_schema``, and
``POST /api/execute`` refusing a payload that does not fit (422 naming the field, nothing stored).

Real server app (its lifespan running) on a real PostgreSQL, through ``httpx.ASGITransport``.
"""

from __future__ import annotations

import textwrap

import httpx
import pytest

from . import server_fixtures

api = server_fixtures.api
server_settings = server_fixtures.server_settings

pytestmark = pytest.mark.asyncio(loop_scope="module")

REPORT = textwrap.dedent(
    """\
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata:
      name: report
      path: tests/inputs/report
      description: Builds the report
      exposed_in_ui: true
      input_schema:
        properties:
          limit: {minimum: 1}
    workload:
      region: eu     # ui:enum=[eu,us]
      limit: 10      # ui:description=Rows per page
      api_key: ""    # ui:secret
    workflow:
      - step: start
        tool: {kind: noop}
    """
)


async def registered(api: httpx.AsyncClient) -> None:
    response = await api.post("/api/catalog/register", json={"content": REPORT})
    assert response.status_code == 200, response.text


async def test_schema_endpoint_serves_the_input_schema(api: httpx.AsyncClient) -> None:
    await registered(api)
    response = await api.get("/api/catalog/tests/inputs/report/schema")
    assert response.status_code == 200, response.text
    body = response.json()
    props = body["schema"]["properties"]
    assert body["path"] == "tests/inputs/report"
    assert props["limit"] == {"default": 10, "type": "number", "minimum": 1, "description": "Rows per page"}
    assert props["region"]["enum"] == ["eu", "us"] and props["api_key"]["writeOnly"] is True
    old = await api.get("/api/catalog/tests/inputs/report/schema", params={"version": body["version"]})
    assert old.status_code == 200 and old.json()["version"] == body["version"]


async def test_ui_schema_has_upstreams_shape(api: httpx.AsyncClient) -> None:
    await registered(api)
    body = (await api.get("/api/catalog/tests/inputs/report/ui_schema")).json()
    assert body["kind"] == "playbook" and body["title"] == "report" and body["exposed_in_ui"] is True
    assert body["description_markdown"] == "Builds the report" and body["generated_at"]
    fields = {f["name"]: f for f in body["fields"]}
    assert fields["region"]["kind"] == "enum" and fields["region"]["options"] == ["eu", "us"]
    assert fields["api_key"]["secret"] is True
    assert fields["limit"]["description"] == "Rows per page" and fields["limit"]["default"] == 10


async def test_unknown_paths_and_versions_are_404(api: httpx.AsyncClient) -> None:
    assert (await api.get("/api/catalog/tests/inputs/nope/schema")).status_code == 404
    await registered(api)
    assert (
        await api.get("/api/catalog/tests/inputs/report/schema", params={"version": 999})
    ).status_code == 404
    bad = await api.get("/api/catalog/tests/inputs/report/schema", params={"version": "x"})
    assert bad.status_code == 400


async def test_execute_refuses_a_payload_that_does_not_fit_and_stores_nothing(api: httpx.AsyncClient) -> None:
    await registered(api)
    before = (await api.get("/api/executions", params={"path": "tests/inputs/report"})).json()
    for payload, field in (
        ({"limit": "ten"}, "limit"),
        ({"limit": 0}, "limit"),
        ({"region": "mars"}, "region"),
    ):
        response = await api.post("/api/execute", json={"path": "tests/inputs/report", "payload": payload})
        assert response.status_code == 422, response.text
        assert f"payload field '{field}'" in response.text
    secret = await api.post(
        "/api/execute", json={"path": "tests/inputs/report", "payload": {"api_key": 987654}}
    )
    assert secret.status_code == 422 and "987654" not in secret.text
    after = (await api.get("/api/executions", params={"path": "tests/inputs/report"})).json()
    assert after == before
    ok = await api.post(
        "/api/execute", json={"path": "tests/inputs/report", "payload": {"limit": 5, "other": 1}}
    )
    assert ok.status_code == 200, ok.text
