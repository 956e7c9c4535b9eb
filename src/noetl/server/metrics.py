"""``GET /metrics``: Prometheus metrics of the queue, executions, workers and global resources.

Read from PostgreSQL at scrape time, so every server replica reports the same numbers and nothing
is lost when a server restarts. Workers have no inbound port (they share nothing but the database);
what they do shows here as queue and worker figures.

=========================================== ==========================================================
``noetl_queue_ready_commands{pool}``         commands waiting to be claimed
``noetl_queue_in_flight_commands{pool}``     commands leased to a worker
``noetl_queue_oldest_wait_seconds{pool}``    how long the oldest ready command has waited
``noetl_executions_running``                 executions not yet completed, failed or cancelled
``noetl_workers{state}``                     registered workers, ``live`` or ``stale`` (silent 120 s)
``noetl_global_resource_capacity{resource}`` units of each global resource (``noetl resource set``)
``noetl_global_resource_in_use{resource}``   units held by running commands
``noetl_orchestrator_passes_total``          this server's orchestration passes (counter)
``noetl_orchestrator_recorded_total``        outcomes those passes recorded (counter)
``noetl_export_lag_events{sink}``            events not yet delivered to an export sink (up to 100,000)
``noetl_export_lag_seconds{sink}``           age of the oldest of those
``noetl_worker_*{worker,...}``               each live worker's own metrics, reported with its heartbeats
                                             when it has no push endpoint (``noetl.telemetry.metrics``)
=========================================== ==========================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from noetl.server.context import Server

router = APIRouter(tags=["metrics"])

WORKER_METRICS_FRESH_SECONDS = 60.0
"""Workers whose last heartbeat is older than this no longer show in /metrics."""
LAG_CAP = 100_000


class _Snapshot(Collector):
    """A collector that yields metric families computed before the scrape was rendered."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


@router.get("/metrics", response_class=Response)
async def metrics(server: Server) -> Response:
    from noetl.server.workers import STALE_AFTER_SECONDS
    from noetl.store import backlog, executions, exports, resources, workers
    from noetl.telemetry import metrics as worker_metrics

    async with server.pool.connection() as conn:
        queue = await backlog.stats(conn)
        running = await executions.count_running(conn)
        registered = await workers.list(conn)
        caps = await resources.list(conn)
        reported = await workers.metrics(conn, WORKER_METRICS_FRESH_SECONDS)
        cursors = await exports.cursors(conn)
        lags = [(c.sink, *await exports.lag(conn, c.position, cap=LAG_CAP)) for c in cursors]
    families: list[Metric] = []
    by_pool: dict[str, dict[str, float]] = {}
    for row in queue:
        pool = by_pool.setdefault(row["pool"], {"ready": 0.0, "in_flight": 0.0, "oldest": 0.0})
        pool["ready"] += row["ready"]
        pool["in_flight"] += row["in_flight"]
        pool["oldest"] = max(pool["oldest"], float(row["oldest_wait_seconds"] or 0.0))
    for name, key, help_text in (
        ("noetl_queue_ready_commands", "ready", "Commands waiting to be claimed."),
        ("noetl_queue_in_flight_commands", "in_flight", "Commands leased to a worker."),
        ("noetl_queue_oldest_wait_seconds", "oldest", "How long the oldest ready command has waited."),
    ):
        family = GaugeMetricFamily(name, help_text, labels=["pool"])
        for pool_name, values in sorted(by_pool.items()):
            family.add_metric([pool_name], values[key])
        families.append(family)
    families.append(
        GaugeMetricFamily("noetl_executions_running", "Executions not yet ended.", value=float(running))
    )
    states = {"live": 0.0, "stale": 0.0}
    for worker in registered:
        states["stale" if (worker.get("heartbeat_age") or 0) > STALE_AFTER_SECONDS else "live"] += 1
    family = GaugeMetricFamily("noetl_workers", "Registered workers by heartbeat state.", labels=["state"])
    for state, count in states.items():
        family.add_metric([state], count)
    families.append(family)
    families.extend(_resources(caps))
    orchestrator = server.orchestrator
    families.append(
        CounterMetricFamily(
            "noetl_orchestrator_passes",
            "Orchestration passes this server ran.",
            value=float(orchestrator.passes),
        )
    )
    families.append(
        CounterMetricFamily(
            "noetl_orchestrator_recorded",
            "Outcomes this server's passes recorded.",
            value=float(orchestrator.recorded),
        )
    )
    families.extend(_export_lags(lags))
    families.extend(worker_metrics.merge(reported))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(families))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def _export_lags(lags: list[tuple[str, int, float]]) -> list[Metric]:
    events = GaugeMetricFamily(
        "noetl_export_lag_events", "Events not yet delivered to a sink.", labels=["sink"]
    )
    seconds = GaugeMetricFamily(
        "noetl_export_lag_seconds", "Age of the oldest event not yet delivered to a sink.", labels=["sink"]
    )
    for sink, behind, age in lags:
        events.add_metric([sink], float(behind))
        seconds.add_metric([sink], age)
    return [events, seconds]


def _resources(caps: list[dict[str, Any]]) -> list[Metric]:
    capacity = GaugeMetricFamily(
        "noetl_global_resource_capacity", "Units of a global resource.", labels=["resource"]
    )
    in_use = GaugeMetricFamily(
        "noetl_global_resource_in_use",
        "Units of a global resource held by running commands.",
        labels=["resource"],
    )
    for row in caps:
        capacity.add_metric([row["name"]], float(row["capacity"]))
        in_use.add_metric([row["name"]], float(row["in_use"]))
    return [capacity, in_use]
