"""Pure parts of telemetry: an event's export row, the JSON log format, stats windows."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest

from noetl.errors import UsageError
from noetl.server.telemetry import window_seconds
from noetl.telemetry import clickhouse, export, logs


def _event(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "tx": "10",
        "execution_id": 7,
        "event_id": 3,
        "event_type": "call.error",
        "step": "fetch",
        "command_id": "7:1",
        "path": "fin/report",
        "catalog_id": 5,
        "parent_execution_id": None,
        "pool": "io",
        "worker_id": "w1",
        "attempt": 2,
        "at": 1_800_000_000.25,
        "created_at": datetime(2027, 1, 15, tzinfo=UTC),
        "data": json.dumps(
            {
                "index": 4,
                "duration_ms": 12.5,
                "attempts": 3,
                "error": {"kind": "http", "message": "503 from orders"},
            }
        ),
    }
    base.update(over)
    return base


def test_an_event_becomes_a_flat_row_with_what_the_views_need() -> None:
    row = clickhouse.row(_event(), {"fetch": "http"}, exported_at_ms=99)
    assert row["playbook_path"] == "fin/report" and row["tool_kind"] == "http"
    assert (row["status"], row["error_kind"], row["error_message"]) == ("error", "http", "503 from orders")
    assert (row["attempt"], row["tries"], row["loop_index"], row["duration_ms"]) == (2, 3, 4, 12.5)
    assert (row["at"], row["at_seconds"], row["exported_at"]) == (1_800_000_000, 1_800_000_000.25, 99)
    assert json.loads(str(row["data"]))["attempts"] == 3


def test_events_without_a_command_or_error_get_empty_fields() -> None:
    row = clickhouse.row(
        _event(
            event_type="playbook.completed",
            step=None,
            command_id=None,
            pool=None,
            worker_id=None,
            attempt=None,
            data="{}",
        ),
        {},
        exported_at_ms=1,
    )
    assert (row["step"], row["worker_id"], row["status"], row["duration_ms"], row["loop_index"]) == (
        "",
        "",
        "COMPLETED",
        None,
        -1,
    )


def test_step_kinds_read_pipelines_and_tolerate_broken_entries() -> None:
    text = (
        "apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: p}\nworkflow:\n"
        "  - step: start\n    tool: [{name: a, kind: http, url: 'http://x'}, {name: b, kind: python, code: 'result=1'}]\n"
    )
    assert export.step_kinds(text) == {"start": "http+python"}
    assert export.step_kinds("not: [a playbook") == {}


def test_json_logs_are_one_object_a_line_with_the_structured_fields() -> None:
    record = logging.LogRecord("noetl.worker", logging.WARNING, __file__, 1, "lease %s lost", ("7:1",), None)
    record.execution_id, record.step, record.command_id = "7", "fetch", "7:1"
    line = json.loads(logs.JsonFormatter().format(record))
    assert line["message"] == "lease 7:1 lost" and line["level"] == "warning"
    assert (line["execution_id"], line["step"], line["command_id"]) == ("7", "fetch", "7:1")
    with pytest.raises(ValueError, match="log format"):
        logs.check("xml")


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("24h", 86400), ("7d", 604800), ("90", 90)])
def test_stats_windows(text: str, seconds: float) -> None:
    assert window_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "0h", "-1d", "1y", "9" * 40 + "d"])
def test_bad_stats_windows_name_the_field(text: str) -> None:
    with pytest.raises(UsageError, match="window"):
        window_seconds(text)
