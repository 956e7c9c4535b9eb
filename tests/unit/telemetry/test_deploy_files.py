"""The shipped telemetry files stay true: the ClickHouse schema operators apply is the one the
exporter creates, and the Grafana dashboard only charts metrics that NoETL serves."""

from __future__ import annotations

import json
import re
from pathlib import Path

from noetl.server import metrics as server_metrics
from noetl.telemetry import clickhouse
from noetl.telemetry.metrics import WorkerMetrics

ROOT = Path(__file__).resolve().parents[3]


def test_the_deploy_schema_is_the_exporters_schema() -> None:
    shipped = (ROOT / "deploy/clickhouse/schema.sql").read_text()
    packaged = Path(clickhouse.__file__).with_name(clickhouse.SCHEMA_FILE).read_text()
    assert shipped == packaged


def _served_names() -> set[str]:
    worker = WorkerMetrics()
    worker.command("python", "default", "ok", 0.1)
    worker.claim_seconds.observe(0.001)
    names = set(re.findall(r"^([a-z_]+)(?:\{|\s)", worker.text(), re.M))
    names |= set(re.findall(r"``(noetl_[a-z_]+)", server_metrics.__doc__ or ""))
    return names


def test_the_grafana_dashboard_charts_only_served_metrics() -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/noetl.json").read_text())
    served = _served_names()
    charted = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bnoetl_[a-z_]+", target["expr"])
    }
    assert charted and charted <= served, charted - served
