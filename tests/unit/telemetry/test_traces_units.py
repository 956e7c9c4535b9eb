"""Spans rebuilt from an event log (pure): the tree, attempts from re-issues, trace contexts."""

from __future__ import annotations

from noetl.telemetry import traces


def _e(
    kind: str, at: float, step: str | None = None, command: str | None = None, **data: object
) -> dict[str, object]:
    return {"event_type": kind, "at": at, "step": step, "command_id": command, "data": data}


LOG = [
    _e("playbook.initialized", 10.0),
    _e("step.enter", 10.1, "fetch"),
    _e("command.issued", 10.2, "fetch", "9:1", index=None, attempt=1),
    _e("command.reissued", 25.0, "fetch", "9:1"),
    _e("call.error", 26.0, "fetch", "9:1", duration_ms=500.0, error={"kind": "http", "message": "503"}),
    _e("command.failed", 26.0, "fetch", "9:1", error={"kind": "http", "message": "503"}),
    _e("step.failed", 26.1, "fetch"),
    _e("playbook.failed", 26.2, error={"message": "fetch failed"}),
]


def test_a_log_becomes_one_tree_with_an_attempt_per_lease() -> None:
    context = traces.TraceContext(traces.derived_trace_id(9))
    spans = traces.spans({"execution_id": 9, "path": "fin/fetch"}, LOG, context, kinds={"fetch": "http"})
    names = [s.name for s in spans]
    assert names == ["execution fin/fetch", "step fetch", "command fetch", "attempt 1", "attempt 2"]
    root, step, command, first, second = spans
    assert root.parent_span_id is None and (root.start, root.end, root.status) == (10.0, 26.2, "error")
    assert step.parent_span_id == root.span_id and command.parent_span_id == step.span_id
    assert first.parent_span_id == second.parent_span_id == command.span_id
    assert (first.start, first.end, first.status) == (10.2, 25.0, "error")  # the lease that expired
    assert (second.start, second.end) == (25.5, 26.0)  # the call's own 500 ms before it failed
    assert command.attributes["noetl.tool.kind"] == "http" and command.status == "error"
    assert len({s.trace_id for s in spans}) == 1


def test_ids_are_derived_so_every_process_computes_the_same() -> None:
    assert traces.command_span_id(9, "9:1") == traces.command_span_id("9", "9:1")
    assert traces.derived_trace_id(9) != traces.derived_trace_id(10)
    assert len(traces.derived_trace_id(9)) == 32 and len(traces.execution_span_id(9)) == 16


def test_traceparent_headers() -> None:
    good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert traces.lineage(good) == {
        "trace": {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "parent_span_id": "00f067aa0ba902b7"}
    }
    for bad in (None, "", "00-xyz-00f067aa0ba902b7-01", "00-" + "0" * 32 + "-00f067aa0ba902b7-01"):
        assert traces.lineage(bad) is None
