"""Running one leased command: its playbook, the task runner, and the events to report.

The same path as the local runtime (``noetl.runtime.runner.run_command`` and
``noetl.runtime.report.outcome_events``), so a step gives the same outcome on both runtimes.
Problems of the infrastructure - a catalog entry that is missing or no longer parses, a context
that cannot be decoded - become a failed outcome with a clear error, never a crash of the worker.
Only cancellation propagates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from noetl.dsl.model import JSON, Playbook
from noetl.engine import context as rctx
from noetl.engine import events as ev
from noetl.errors import NoetlError
from noetl.runtime import results
from noetl.runtime.credentials import CredentialStore
from noetl.runtime.report import outcome_events
from noetl.runtime.runner import Outcome, run_command
from noetl.store.ports import Lease
from noetl.telemetry.metrics import WorkerMetrics
from noetl.tools.base import ChildRunner, Services, Suspended
from noetl.tools.sandbox import Sandbox
from noetl.worker.playbooks import Playbooks

log = logging.getLogger("noetl.worker")


@dataclass(frozen=True, slots=True)
class Finished:
    """A command that ran, as the queue records it: ``ok`` and its events (dicts without ids)."""

    lease: Lease
    ok: bool
    events: list[dict[str, Any]]
    wait: dict[str, Any] | None = None
    """Set when the run ended waiting (a sub-playbook call): what for; ``events`` is then empty and
    the command is parked instead of reported (``Orchestrator.suspend``)."""


def log_fields(lease: Lease) -> dict[str, object]:
    """The structured fields every log line about a command carries (``extra=``)."""
    return {
        "execution_id": str(lease.execution_id),
        "step": lease.step,
        "command_id": lease.command_id,
        "attempt": lease.attempt,
    }


class CommandRunner:
    """Runs leases with shared services (python pool, http clients) and a credential store."""

    def __init__(
        self,
        playbooks: Playbooks,
        credentials: CredentialStore,
        *,
        python_pool: object,
        extras: dict[str, Any],
        run_child: Callable[..., Any] | None,
        sandbox: Sandbox | None = None,
        metrics: WorkerMetrics | None = None,
        trace_headers: Callable[[Lease], Awaitable[dict[str, str]]] | None = None,
    ) -> None:
        self._playbooks = playbooks
        self._credentials = credentials
        self._python_pool = python_pool
        self._extras = extras
        self._run_child = run_child
        self._sandbox = sandbox
        self._metrics = metrics
        self._trace_headers = trace_headers

    async def run(self, lease: Lease) -> Finished:
        started = time.perf_counter()
        trace = await self._traced(lease)
        try:
            outcome = await self._outcome(lease, trace)
        except Suspended as waiting:
            log.debug(
                "command waits for %s, execution_id=%s command_id=%s",
                waiting.wait,
                lease.execution_id,
                lease.command_id,
                extra=log_fields(lease),
            )
            return Finished(lease, True, [], waiting.wait)
        seconds = time.perf_counter() - started
        _log_done(lease, outcome, seconds * 1000, trace)
        if self._metrics is not None:
            kind = await self._tool_kind(lease)
            result = "ok" if outcome.status == "ok" else str((outcome.error or {}).get("kind") or "error")
            self._metrics.command(kind, lease.pool, result, seconds)
        return report_of(lease, outcome)

    async def _tool_kind(self, lease: Lease) -> str:
        """The step's tool kind (``http+python`` for a pipeline), for metrics; ``unknown`` if gone."""
        try:
            step = (await self._playbooks.get(lease.catalog_id)).steps.get(lease.step)
        except NoetlError:
            return "unknown"
        return "+".join(task.kind for task in step.tool) if step is not None else "unknown"

    async def _outcome(self, lease: Lease, trace: dict[str, str]) -> Outcome:
        try:
            playbook = await self._playbooks.get(lease.catalog_id)
            context = rctx.from_wire(await self._hydrated(playbook, lease))
            return await run_command(
                playbook,
                lease.step,
                context,
                execution_id=str(lease.execution_id),
                services=self._services(lease, trace),
                credentials=self._credentials,
            )
        except asyncio.CancelledError:
            raise
        except NoetlError as exc:
            return failure(exc.kind, exc.message)
        except Exception as exc:  # a bug of ours must fail this command, not the worker
            log.exception("command crashed the task runner", extra=log_fields(lease))
            return failure("internal", f"worker failed to run the command: {type(exc).__name__}: {exc}")

    async def _hydrated(self, playbook: Playbook, lease: Lease) -> dict[str, Any]:
        """The lease's wire context with the results of spilled loops its step reads (DECISIONS 19),
        loaded from the event log."""
        wire = dict(lease.context)
        steps = wire.get("steps")
        if not isinstance(steps, dict):
            return wire
        wanted = results.referenced_refs(playbook.steps[lease.step], steps)
        if not wanted:
            return wire
        loaded = await self._load(wanted)
        return results.hydrate_wire(wire, loaded)

    async def _load(self, wanted: list[results.Ref]) -> results.Loaded:
        from noetl.store import events

        async def load(conn: Any) -> results.Loaded:
            found: results.Loaded = {}
            for ref in wanted:
                if results.key(ref) not in found:
                    found[results.key(ref)] = await events.loop_results(conn, ref)
            return found

        return await self._playbooks.database.run("reading a loop's results", load)

    def _services(self, lease: Lease, trace_headers: dict[str, str]) -> Services:
        run_child: ChildRunner | None = None
        if self._run_child is not None:
            run_child = _keyed_child_runner(self._run_child, lease)
        return Services(
            python_pool=self._python_pool,
            run_child=run_child,
            extras=self._extras,
            sandbox=self._sandbox,
            trace_headers=trace_headers,
        )

    async def _traced(self, lease: Lease) -> dict[str, str]:
        """The ``traceparent`` of the lease's command when tracing is on; a lookup that fails costs
        the call its header, never the call."""
        if self._trace_headers is None:
            return {}
        try:
            return await self._trace_headers(lease)
        except NoetlError:
            return {}


def _keyed_child_runner(run_child: Callable[..., Any], lease: Lease) -> ChildRunner:
    """``run_child`` for one run of ``lease``: each call carries its parent and a key naming it
    (``<command_id>#<n>``, n counting this run's calls), so a run that repeats an earlier run's
    calls - the command running again - attaches to the children that run started."""
    calls = 0

    async def keyed(**request: Any) -> Any:
        nonlocal calls
        key = f"{lease.command_id}#{calls}"
        calls += 1
        return await run_child(
            **request,
            parent_execution_id=lease.execution_id,
            parent_key=key,
            parent_priority=lease.priority,
        )

    return keyed


def report_of(lease: Lease, outcome: Outcome) -> Finished:
    """The events of ``outcome`` (``call.*``, ``step.exit``, ``command.*``) as the queue stores them."""
    command = ev.Command(
        lease.command_id, str(lease.execution_id), lease.step, {}, lease.index, lease.attempt
    )
    events = [_wire(event) for event in outcome_events(command, outcome, time.time())]
    return Finished(lease, outcome.status == "ok", events)


def failure(kind: str, message: str) -> Outcome:
    """The outcome of a command that could not run (or whose outcome could not be stored)."""
    error: dict[str, JSON] = {"kind": kind, "message": message, "retryable": False}
    return Outcome("error", None, error, {}, 0, 0.0)


def _wire(event: ev.Event) -> dict[str, Any]:
    """``Event.to_dict`` without the ids the log assigns (event id, execution id)."""
    return {
        "event_type": event.name,
        "step": event.step,
        "command_id": event.command_id,
        "data": dict(event.data),
        "timestamp": event.at,
    }


def _log_done(lease: Lease, outcome: Outcome, ms: float, trace: dict[str, str]) -> None:
    fields = {**log_fields(lease), "status": outcome.status, "duration_ms": round(ms, 3)}
    if "traceparent" in trace:
        fields["trace_id"], fields["span_id"] = trace["traceparent"].split("-")[1:3]
    if outcome.status == "ok":
        log.info(
            "command done execution_id=%s step=%s command_id=%s attempt=%d status=ok duration_ms=%.1f",
            lease.execution_id,
            lease.step,
            lease.command_id,
            lease.attempt,
            ms,
            extra=fields,
        )
        return
    error = outcome.error or {}
    log.warning(
        "command failed execution_id=%s step=%s command_id=%s attempt=%d error_kind=%s error=%s",
        lease.execution_id,
        lease.step,
        lease.command_id,
        lease.attempt,
        error.get("kind"),
        error.get("message"),
        extra=fields,
    )
