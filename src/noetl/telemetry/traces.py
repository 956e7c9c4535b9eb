"""Traces of executions, built from the event log: execution → step → command → attempt.

Spans are not recorded while an execution runs; they are rebuilt from its events once it has ended
(the log holds every start and end time), so tracing costs the running system nothing and a crash
loses no span. Ids are derived, never stored, so every process computes the same ones:

* the **trace id** is the one of a W3C ``traceparent`` the execute request carried (kept in the
  first event as ``trace``), else a hash of the root execution's id; a sub-playbook's execution
  shares its root's trace;
* a **span id** is a hash of what the span stands for (execution, step run, command, attempt);
* a sub-playbook's execution span is a child of the span of the command that called it (its
  ``parent_key`` names that command).

:func:`spans` is pure: events in, :class:`SpanRecord` out. The export sink that sends them over OTLP
is ``noetl.telemetry.export.TraceSink``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from noetl.errors import SinkError
from noetl.store import events, exports
from noetl.store.db import Connection

if TYPE_CHECKING:
    from noetl.telemetry.export import KindCache

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
MAX_SPANS = 10_000
"""Spans per execution; beyond it attempt spans are dropped first (the count is an attribute)."""

ENDS = {"command.completed": "ok", "command.failed": "error", "command.cancelled": "cancelled"}
TERMINAL = {"playbook.completed": "ok", "playbook.failed": "error", "playbook.cancelled": "cancelled"}


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str
    parent_span_id: str | None = None


@dataclass
class SpanRecord:
    """One span: ids are lowercase hex (32 and 16 digits); times in seconds since the epoch."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    start: float
    end: float
    attributes: dict[str, str | int | float | bool] = field(default_factory=dict)
    status: str = "ok"
    """``ok``, ``error`` or ``cancelled``."""
    message: str = ""


def otlp_enabled(env: Mapping[str, str]) -> bool:
    """Whether the standard OpenTelemetry variables ask for OTLP traces (an endpoint is set, and
    neither ``OTEL_TRACES_EXPORTER=none`` nor ``OTEL_SDK_DISABLED=true``)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


class Propagation:
    """The ``traceparent`` a command's outbound calls carry: its trace (the root execution's, read
    once per execution and kept) and the command's span as the parent."""

    def __init__(self, size: int = 1024) -> None:
        self._traces: dict[int, str] = {}
        self._size = size

    async def headers(self, conn: Connection, execution_id: int, command_id: str) -> dict[str, str]:
        trace_id = self._traces.get(execution_id)
        if trace_id is None:
            found = await exports.trace_root(conn, execution_id)
            root, carried = found if found is not None else (execution_id, None)
            trace_id = carried or derived_trace_id(root)
            if len(self._traces) >= self._size:
                self._traces.pop(next(iter(self._traces)))
            self._traces[execution_id] = trace_id
        return {"traceparent": traceparent(trace_id, command_span_id(execution_id, command_id))}


def parse_traceparent(header: str | None) -> TraceContext | None:
    """The trace context of a W3C ``traceparent`` header; None when absent or malformed."""
    match = TRACEPARENT.match((header or "").strip().lower())
    if match is None or set(match[1]) == {"0"} or set(match[2]) == {"0"}:
        return None
    return TraceContext(match[1], match[2])


def lineage(header: str | None) -> dict[str, Any] | None:
    """What the first event keeps of an execute request's ``traceparent`` (None without a valid one):
    the execution joins that trace, its span a child of the caller's."""
    context = parse_traceparent(header)
    if context is None:
        return None
    return {"trace": {"trace_id": context.trace_id, "parent_span_id": context.parent_span_id}}


def traceparent(trace_id: str, span_id: str) -> str:
    """The W3C header naming ``span_id`` of ``trace_id`` as the parent (sampled)."""
    return f"00-{trace_id}-{span_id}-01"


def derived_trace_id(root_execution_id: int | str) -> str:
    return hashlib.sha256(f"noetl-trace:{root_execution_id}".encode()).hexdigest()[:32]


def span_id(*parts: object) -> str:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()[:16]


def execution_span_id(execution_id: int | str) -> str:
    return span_id(execution_id, "execution")


def command_span_id(execution_id: int | str, command_id: str) -> str:
    return span_id(execution_id, "command", command_id)


def attempt_span_id(execution_id: int | str, command_id: str, attempt: int) -> str:
    return span_id(execution_id, "attempt", command_id, attempt)


def spans(
    execution: Mapping[str, Any],
    events: Iterable[Mapping[str, Any]],
    context: TraceContext,
    *,
    kinds: Mapping[str, str] | None = None,
    commands: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[SpanRecord]:
    """The spans of one ended execution.

    ``execution`` has ``execution_id`` and ``path``; ``events`` are its log in order (``event_type``,
    ``step``, ``command_id``, ``data``, ``at``); ``context`` its trace and the execution span's parent;
    ``kinds`` maps steps to tool kinds, ``commands`` command ids to their ``pool`` and ``worker_id``.
    """
    return _Builder(execution, context, kinds or {}, commands or {}).build(list(events))


class _Builder:
    def __init__(
        self,
        execution: Mapping[str, Any],
        context: TraceContext,
        kinds: Mapping[str, str],
        commands: Mapping[str, Mapping[str, Any]],
    ) -> None:
        self.execution_id = execution["execution_id"]
        self.path = str(execution["path"])
        self.context = context
        self.kinds = kinds
        self.commands = commands
        self.root = SpanRecord(
            f"execution {self.path}",
            context.trace_id,
            execution_span_id(self.execution_id),
            context.parent_span_id,
            0.0,
            0.0,
            {"noetl.execution_id": str(self.execution_id), "noetl.playbook.path": self.path},
        )
        self.steps: dict[str, SpanRecord] = {}  # the open run of each step
        self.step_runs: dict[str, int] = {}
        self.command_spans: dict[str, SpanRecord] = {}
        self.attempts: dict[str, SpanRecord] = {}  # the open attempt of each command
        self.attempt_counts: dict[str, int] = {}
        self._since: dict[str, float] = {}  # when the command's current attempt can have begun
        self._call_ms: dict[str, float] = {}  # the last call's own duration, per command
        self.out: list[SpanRecord] = [self.root]
        self.dropped = 0

    def build(self, events: list[Mapping[str, Any]]) -> list[SpanRecord]:
        for event in events:
            self._apply(event)
        last = float(events[-1]["at"]) if events else 0.0
        self.root.start = float(events[0]["at"]) if events else 0.0
        self.root.end = max(self.root.end, last)
        for span in self.out:  # anything left open ends with the execution
            if span.end < span.start:
                span.end = self.root.end
        if self.dropped:
            self.root.attributes["noetl.spans_dropped"] = self.dropped
        return self.out

    def _apply(self, event: Mapping[str, Any]) -> None:
        kind, at = str(event["event_type"]), float(event["at"])
        data = _data(event)
        step, command_id = event.get("step"), event.get("command_id")
        if kind == "step.enter" and step:
            self._open_step(str(step), at)
        elif kind == "command.issued" and command_id and step:
            self._open_command(str(command_id), str(step), at, data)
        elif kind == "command.started" and command_id:
            self._open_attempt(str(command_id), at)
        elif kind in ("call.done", "call.error") and command_id:
            self._call(str(command_id), data)
        elif kind in ENDS and command_id:
            self._end_command(str(command_id), at, ENDS[kind], data)
        elif kind == "command.reissued" and command_id:
            self._ensure_attempt(str(command_id), self._since.get(str(command_id), at))
            self._end_attempt(str(command_id), at, "error", "lease expired: the command runs again")
            self._since[str(command_id)] = at
        elif kind in ("step.exit", "loop.done", "step.failed", "step.skipped") and step:
            self._touch_step(str(step), at, "error" if kind == "step.failed" else None)
        elif kind in TERMINAL:
            self.root.end = at
            self.root.status = TERMINAL[kind]
            self.root.message = _message(data)

    def _open_step(self, step: str, at: float) -> None:
        run = self.step_runs.get(step, 0) + 1
        self.step_runs[step] = run
        span = SpanRecord(
            f"step {step}",
            self.context.trace_id,
            span_id(self.execution_id, "step", step, run),
            self.root.span_id,
            at,
            at,
            {"noetl.step": step, "noetl.tool.kind": self.kinds.get(step, "")},
        )
        self.steps[step] = span
        self._add(span)

    def _open_command(self, command_id: str, step: str, at: float, data: Mapping[str, Any]) -> None:
        parent = self.steps.get(step)
        if command_id in self.command_spans:
            return  # issued again after its lease expired: the same command span
        row = self.commands.get(command_id, {})
        attributes: dict[str, str | int | float | bool] = {
            "noetl.step": step,
            "noetl.command_id": command_id,
            "noetl.tool.kind": self.kinds.get(step, ""),
            "noetl.pool": str(row.get("pool") or ""),
            "noetl.worker_id": str(row.get("worker_id") or ""),
        }
        if isinstance(data.get("index"), int):
            attributes["noetl.loop.index"] = data["index"]
        span = SpanRecord(
            f"command {step}" + (f"[{data['index']}]" if isinstance(data.get("index"), int) else ""),
            self.context.trace_id,
            command_span_id(self.execution_id, command_id),
            parent.span_id if parent is not None else self.root.span_id,
            at,
            at - 1.0,  # open
            attributes,
        )
        self.command_spans[command_id] = span
        self._since[command_id] = at
        self._add(span)

    def _open_attempt(self, command_id: str, at: float) -> None:
        command = self.command_spans.get(command_id)
        if command is None:
            return
        number = self.attempt_counts.get(command_id, 0) + 1
        self.attempt_counts[command_id] = number
        command.attributes["noetl.attempts"] = number
        span = SpanRecord(
            f"attempt {number}",
            self.context.trace_id,
            attempt_span_id(self.execution_id, command_id, number),
            command.span_id,
            at,
            at - 1.0,
            {"noetl.command_id": command_id, "noetl.attempt": number},
        )
        self.attempts[command_id] = span
        if len(self.out) >= MAX_SPANS:
            self.dropped += 1
            return
        self.out.append(span)

    def _call(self, command_id: str, data: Mapping[str, Any]) -> None:
        command = self.command_spans.get(command_id)
        if command is not None and isinstance(data.get("attempts"), int):
            command.attributes["noetl.retries"] = max(int(data["attempts"]) - 1, 0)
        if isinstance(data.get("duration_ms"), int | float):
            self._call_ms[command_id] = float(data["duration_ms"])

    def _ensure_attempt(self, command_id: str, start: float) -> None:
        """The distributed runtime records no ``command.started``: an attempt then spans from what the
        log allows (the call's own duration before its end, else the issue or the last re-issue)."""
        if command_id not in self.attempts:
            self._open_attempt(command_id, start)

    def _end_attempt(self, command_id: str, at: float, status: str, message: str) -> None:
        attempt = self.attempts.pop(command_id, None)
        if attempt is not None:
            attempt.end, attempt.status, attempt.message = at, status, message

    def _end_command(self, command_id: str, at: float, status: str, data: Mapping[str, Any]) -> None:
        if command_id not in self.attempts and command_id in self._call_ms:
            self._ensure_attempt(command_id, at - self._call_ms[command_id] / 1000)
        self._end_attempt(command_id, at, status, _message(data))
        command = self.command_spans.get(command_id)
        if command is None:
            return
        command.end, command.status, command.message = at, status, _message(data)
        command.attributes["noetl.outcome"] = status
        step = self.steps.get(str(command.attributes["noetl.step"]))
        if step is not None:
            step.end = max(step.end, at)

    def _touch_step(self, step: str, at: float, status: str | None) -> None:
        span = self.steps.get(step)
        if span is not None:
            span.end = max(span.end, at)
            if status:
                span.status = status

    def _add(self, span: SpanRecord) -> None:
        if len(self.out) >= MAX_SPANS:
            self.dropped += 1
            return
        self.out.append(span)


def _data(event: Mapping[str, Any]) -> Mapping[str, Any]:
    data = event.get("data")
    if isinstance(data, str):
        import json

        loaded = json.loads(data)
        return loaded if isinstance(loaded, dict) else {}
    return data if isinstance(data, Mapping) else {}


def _message(data: Mapping[str, Any]) -> str:
    error = data.get("error")
    if isinstance(error, Mapping):
        return str(error.get("message") or "")[:500]
    return ""


# ---- the exporter's sink: spans over OTLP/HTTP -------------------------------------------------------

SINK = "otlp"
MAX_DEPTH = 64
"""Sub-playbook levels followed up to the root execution (a trace's origin)."""


class TraceSink:
    """The spans of every execution that ended, sent with the OpenTelemetry SDK's OTLP/HTTP exporter
    (the exporter's ``otlp`` sink). The endpoint, headers and service name come from the standard
    ``OTEL_EXPORTER_OTLP_*`` and ``OTEL_SERVICE_NAME`` variables, as the SDK reads them."""

    name = SINK

    def __init__(self, timeout: float = 5.0) -> None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise SinkError(
                "OTLP traces need the OpenTelemetry SDK: pip install 'noetl[telemetry]'"
            ) from None
        self._exporter = OTLPSpanExporter(timeout=timeout)

    async def deliver(self, conn: Connection, events: Sequence[dict[str, Any]], kinds: KindCache) -> None:
        import asyncio

        records: list[SpanRecord] = []
        for event in events:
            if event["event_type"] in TERMINAL:
                records.extend(await self._spans_of(conn, int(event["execution_id"]), kinds))
        if records and not await asyncio.to_thread(self._send, records):
            raise SinkError(f"OTLP endpoint did not take {len(records)} spans (see the log above)")

    async def close(self) -> None:
        self._exporter.shutdown()  # type: ignore[no-untyped-call]

    async def _spans_of(self, conn: Connection, execution_id: int, kinds: KindCache) -> list[SpanRecord]:
        info = await exports.execution_info(conn, execution_id)
        if info is None:
            return []
        history = [e.to_dict(str(execution_id)) for e in await events.read(conn, execution_id)]
        command_ids = sorted({e["command_id"] for e in history if e["command_id"]})
        commands = await exports.command_rows(conn, command_ids)
        context = await self._context(conn, info, history[0] if history else None)
        rows = [{**e, "at": e["timestamp"]} for e in history]
        return spans(info, rows, context, kinds=await kinds.of(conn, info["catalog_id"]), commands=commands)

    async def _context(
        self, conn: Connection, info: Mapping[str, Any], first: Mapping[str, Any] | None
    ) -> TraceContext:
        parent_id = info["parent_execution_id"]
        if parent_id is None:
            return _root_context(int(info["execution_id"]), first)
        root, parent_span = info, command_span_id(parent_id, str(info["parent_key"] or "").split("#")[0])
        if not info["parent_key"]:
            parent_span = execution_span_id(parent_id)
        for _ in range(MAX_DEPTH):
            if root["parent_execution_id"] is None:
                break
            found = await exports.execution_info(conn, int(root["parent_execution_id"]))
            if found is None:
                break
            root = found
        head = await events.read(conn, int(root["execution_id"]), limit=1)
        origin = _root_context(int(root["execution_id"]), head[0].to_dict("") if head else None)
        return TraceContext(origin.trace_id, parent_span)

    def _send(self, records: list[SpanRecord]) -> bool:
        from opentelemetry.sdk.trace.export import SpanExportResult

        result = self._exporter.export([_readable(r) for r in records])
        return bool(result == SpanExportResult.SUCCESS)


def _root_context(execution_id: int, first: Mapping[str, Any] | None) -> TraceContext:
    """A root execution's trace: the one its execute request carried (``trace`` in its first
    event), else one derived from its id."""
    data = (first or {}).get("data") or {}
    trace = data.get("trace") if isinstance(data, Mapping) else None
    if isinstance(trace, Mapping) and isinstance(trace.get("trace_id"), str):
        parent = trace.get("parent_span_id")
        return TraceContext(str(trace["trace_id"]), str(parent) if isinstance(parent, str) else None)
    return TraceContext(derived_trace_id(execution_id))


def _readable(record: SpanRecord) -> Any:
    """The SDK's ReadableSpan of ``record``."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext, SpanKind, TraceFlags
    from opentelemetry.trace.status import Status, StatusCode

    def ctx(span: str, remote: bool) -> SpanContext:
        return SpanContext(int(record.trace_id, 16), int(span, 16), remote, TraceFlags(TraceFlags.SAMPLED))

    status = (
        Status(StatusCode.ERROR, record.message or None)
        if record.status == "error"
        else Status(StatusCode.OK)
    )
    return ReadableSpan(
        name=record.name,
        context=ctx(record.span_id, False),
        parent=ctx(record.parent_span_id, True) if record.parent_span_id else None,
        resource=Resource.create({"service.name": "noetl"}),  # OTEL_SERVICE_NAME, if set, wins
        attributes={**record.attributes, "noetl.outcome": record.status},
        kind=SpanKind.INTERNAL,
        status=status,
        start_time=int(record.start * 1e9),
        end_time=int(max(record.end, record.start) * 1e9),
    )
