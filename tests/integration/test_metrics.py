"""``GET /metrics``: Prometheus text with the queue, executions, workers and global resources.

The app runs on this module's database with no worker: an execution whose first step waits in
pool ``metrics-pool`` stays queued, so the figures are known exactly. Parsed with
``prometheus_client``'s own parser, as a Prometheus server would read them.
"""

from __future__ import annotations

import textwrap

import httpx
from prometheus_client.parser import text_string_to_metric_families

from . import server_fixtures
from .server_fixtures import eventually

api = server_fixtures.api
server_settings = server_fixtures.server_settings

QUEUED = textwrap.dedent(
    """\
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: queued, path: tests/metrics/queued}
    workflow:
      - step: start
        spec: {pool: metrics-pool}
        tool: {kind: noop}
    """
)


async def scrape(api: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await api.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


async def test_metrics_show_the_queue_executions_workers_and_resources(api: httpx.AsyncClient) -> None:
    before = await scrape(api)
    assert before[("noetl_executions_running", ())] == 0
    assert before[("noetl_workers", (("state", "live"),))] == 0
    assert ("noetl_orchestrator_passes_total", ()) in before

    registered = await api.post("/api/catalog/register", json={"content": QUEUED})
    assert registered.status_code == 200, registered.text
    for _ in range(2):
        started = await api.post("/api/execute", json={"path": "tests/metrics/queued"})
        assert started.status_code == 200, started.text
    put = await api.post("/api/worker/pool/register", json={"name": "metrics-worker", "pools": ["other"]})
    assert put.status_code == 200, put.text
    resource = await api.put("/api/resources/metrics_pg", json={"capacity": 3})
    assert resource.status_code in (200, 201), resource.text

    async def queued() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        found = await scrape(api)
        return found if found.get(("noetl_queue_ready_commands", (("pool", "metrics-pool"),))) == 2 else None

    after = await eventually(queued, "two ready commands in metrics-pool")
    assert after[("noetl_queue_in_flight_commands", (("pool", "metrics-pool"),))] == 0
    assert after[("noetl_queue_oldest_wait_seconds", (("pool", "metrics-pool"),))] >= 0
    assert after[("noetl_executions_running", ())] == 2
    assert after[("noetl_workers", (("state", "live"),))] == 1
    assert after[("noetl_global_resource_capacity", (("resource", "metrics_pg"),))] == 3
    assert after[("noetl_global_resource_in_use", (("resource", "metrics_pg"),))] == 0
