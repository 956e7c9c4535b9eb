"""Execution state and the fold that builds it from events.

``fold(events)`` replays a log from the start; ``apply(state, event)`` folds one more event into a
state in place. Both are pure: the state depends only on the events, never on the clock or on
I/O, so folding the same log twice gives equal states (tested), and the server can rebuild any
execution after a restart.

What each event does to the state:

==========================  =====================================================================
``playbook.initialized``    status RUNNING, variables = the merged workload, path, start time
``step.enter``              step RUNNING (run count + 1); a loop step gets its items and counters
``command.issued``          the command is in flight (loop: next index to dispatch moves on)
``call.done``/``call.error`` the outcome is attached to the in-flight command (first one wins)
``call.waiting``            the in-flight command waits (``waiting``: what for); it holds no slot
``command.completed|failed`` the command leaves flight; its outcome is recorded: variables written
                            by tasks, the step's result and status (loop: the iteration's result)
``command.cancelled``       the command leaves flight, nothing recorded; a running step with no
                            command left in flight is CANCELLED
``ctx.updated``             variables written by ``set`` (last event wins)
``step.skipped``            step SKIPPED
``next.evaluated``          the targets that an arc fired for are armed (waiting for dispatch);
                            a failure no arc handled is recorded
``loop.done``               the loop step's aggregate result and its final status
``step.failed``             a step failed before any command ran (for example ``loop.in`` invalid)
``playbook.*`` terminal     the execution's final status, error and final result
==========================  =====================================================================

Events about commands that are no longer in flight are ignored: this is what makes recording
exactly-once when a command is run twice (at-least-once execution).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from noetl.engine import events as ev

PENDING = "PENDING"
RUNNING = "RUNNING"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
SKIPPED = "SKIPPED"
CANCELLED = "CANCELLED"

TERMINAL_STEP = frozenset({COMPLETED, FAILED, SKIPPED})


@dataclass(slots=True)
class LoopState:
    items: list[Any]
    max_in_flight: int
    next_index: int = 0
    in_flight: int = 0
    succeeded: int = 0
    failed: int = 0
    stopped: bool = False
    first_error: dict[str, Any] | None = None
    spill: bool = False
    """Per-iteration results stay in the log (``call.done``), not here (``Limits.inline_results``)."""
    entered: int = 0
    """The id of this run's ``step.enter``: its iterations' events come after it."""

    @property
    def total(self) -> int:
        return len(self.items)

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed


@dataclass(slots=True)
class StepState:
    status: str = PENDING
    runs: int = 0
    in_flight: int = 0
    armed: bool = False
    error: dict[str, Any] | None = None
    output_error: dict[str, Any] | None = None
    done_seq: int = 0
    loop: LoopState | None = None
    order: int = 0
    """When the step first appeared in the state (the order :attr:`State.steps` keeps)."""

    def copy(self) -> StepState:
        loop = self.loop
        if loop is not None:
            loop = LoopState(
                loop.items,
                loop.max_in_flight,
                loop.next_index,
                loop.in_flight,
                loop.succeeded,
                loop.failed,
                loop.stopped,
                loop.first_error,
                loop.spill,
                loop.entered,
            )
        return StepState(
            self.status,
            self.runs,
            self.in_flight,
            self.armed,
            self.error,
            self.output_error,
            self.done_seq,
            loop,
            self.order,
        )


@dataclass(slots=True)
class InFlight:
    """A command that was issued and has not reached a terminal event yet."""

    step: str
    index: int | None
    outcome: dict[str, Any] | None = None
    waiting: dict[str, Any] | None = None
    """What the command waits for since its last ``call.waiting`` (``{kind, execution_id, ...}``)."""


@dataclass(slots=True)
class State:
    execution_id: str = ""
    playbook_path: str = ""
    parent_execution_id: str | None = None
    status: str = PENDING
    variables: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, StepState] = field(default_factory=dict)
    commands: dict[str, InFlight] = field(default_factory=dict)
    loop_results: dict[str, dict[int, Any]] = field(default_factory=dict)
    command_seq: int = 0
    done_seq: int = 0
    executed: list[str] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    final_result: Any = None
    started_at: float = 0.0
    completed_at: float | None = None
    event_count: int = 0
    last_event_id: int = 0
    priority: int | None = None
    """The execute request's ``priority`` (``playbook.initialized``), None when it gave none."""
    armed: dict[str, None] = field(default_factory=dict)
    """The steps whose ``armed`` is set, so that settling looks at those only, not at every step
    that ran (a chain of 10,000 steps; issue 17)."""

    @property
    def terminal(self) -> bool:
        return self.status in (COMPLETED, FAILED, CANCELLED)

    def step(self, name: str) -> StepState:
        st = self.steps.get(name)
        if st is None:
            st = self.steps[name] = StepState(order=len(self.steps))
        return st

    def fork(self) -> State:
        """A copy that the engine may fold its own decisions into without touching this state.

        Per-iteration results are shared: only worker events (never the engine's) write into them.
        """
        return State(
            self.execution_id,
            self.playbook_path,
            self.parent_execution_id,
            self.status,
            dict(self.variables),
            dict(self.results),
            {name: st.copy() for name, st in self.steps.items()},
            dict(self.commands),
            dict(self.loop_results),
            self.command_seq,
            self.done_seq,
            list(self.executed),
            list(self.failures),
            self.error,
            self.final_result,
            self.started_at,
            self.completed_at,
            self.event_count,
            self.last_event_id,
            self.priority,
            dict(self.armed),
        )


def fold(events: Iterable[ev.Event], state: State | None = None) -> State:
    """Fold ``events`` (from the start of a log, or onto ``state``) and return the state."""
    state = state if state is not None else State()
    for event in events:
        apply(state, event)
    return state


def apply(state: State, event: ev.Event) -> None:
    """Fold one event into ``state`` in place."""
    state.event_count += 1
    if event.id:
        state.last_event_id = event.id
    handler = _HANDLERS.get(event.name)
    if handler is not None:
        handler(state, event)


def _initialized(state: State, e: ev.Event) -> None:
    d = e.data
    state.execution_id = str(d.get("execution_id", state.execution_id))
    state.playbook_path = str(d.get("path", ""))
    state.parent_execution_id = d.get("parent_execution_id")
    state.variables = dict(d.get("workload") or {})
    resume = d.get("resume")
    if isinstance(resume, dict):  # a re-run from a step: what the steps before it left (DECISIONS: UI)
        state.variables.update(resume.get("variables") or {})
        state.results.update(resume.get("results") or {})
    state.status = RUNNING
    state.started_at = e.at
    state.priority = d.get("priority")


def _step_enter(state: State, e: ev.Event) -> None:
    assert e.step is not None
    st = state.step(e.step)
    st.status = RUNNING
    st.runs += 1
    st.armed = False
    state.armed.pop(e.step, None)
    st.error = None
    st.output_error = None
    loop = e.data.get("loop")
    if loop is not None:
        spill = bool(loop.get("spill"))
        st.loop = LoopState(list(loop["items"]), int(loop["max_in_flight"]), spill=spill, entered=e.id)
        state.loop_results[e.step] = {}
    else:
        st.loop = None


def _command_issued(state: State, e: ev.Event) -> None:
    assert e.step is not None and e.command_id is not None
    index = e.data.get("index")
    state.commands[e.command_id] = InFlight(e.step, index)
    state.command_seq += 1
    st = state.step(e.step)
    st.in_flight += 1
    if st.loop is not None and index is not None:
        st.loop.in_flight += 1
        st.loop.next_index = max(st.loop.next_index, index + 1)


def _call_outcome(state: State, e: ev.Event) -> None:
    cmd = state.commands.get(e.command_id or "")
    if cmd is not None and cmd.outcome is None:
        cmd.outcome = dict(e.data)
        cmd.outcome["ok"] = e.name == ev.CALL_DONE


def _call_waiting(state: State, e: ev.Event) -> None:
    cmd = state.commands.get(e.command_id or "")
    if cmd is not None and cmd.outcome is None:
        cmd.waiting = dict(e.data.get("wait") or {})


def _command_terminal(state: State, e: ev.Event) -> None:
    cmd = state.commands.pop(e.command_id or "", None)
    if cmd is None:
        return  # duplicate or late: recorded once already
    st = state.step(cmd.step)
    st.in_flight -= 1
    if e.name == ev.COMMAND_CANCELLED:
        if st.loop is not None and cmd.index is not None:
            st.loop.in_flight -= 1
        if st.in_flight == 0 and st.status == RUNNING:
            st.status = CANCELLED  # nothing of it runs any more: not "running" forever (issue 17)
        return
    outcome = cmd.outcome or {}
    ok = e.name == ev.COMMAND_COMPLETED and outcome.get("ok", True)
    updates = outcome.get("context_updates")
    if updates:
        state.variables.update(updates)
    error = outcome.get("error") or (
        None if ok else dict(e.data.get("error") or {"message": "command failed"})
    )
    if st.loop is not None and cmd.index is not None:
        loop = st.loop
        loop.in_flight -= 1
        if not loop.spill:
            state.loop_results[cmd.step][cmd.index] = outcome.get("result") if ok else None
        if ok:
            loop.succeeded += 1
        else:
            loop.failed += 1
            if loop.first_error is None:
                loop.first_error = error
        return
    state.results[cmd.step] = outcome.get("result")
    st.output_error = error
    _finish_step(state, cmd.step, COMPLETED if ok else FAILED, None if ok else error)


def _finish_step(state: State, step: str, status: str, error: dict[str, Any] | None) -> None:
    st = state.step(step)
    st.status = status
    st.error = error
    state.done_seq += 1
    st.done_seq = state.done_seq
    state.executed.append(step)


def _ctx_updated(state: State, e: ev.Event) -> None:
    state.variables.update(e.data.get("values") or {})


def _step_skipped(state: State, e: ev.Event) -> None:
    assert e.step is not None
    st = state.step(e.step)
    st.status = SKIPPED
    st.armed = False
    state.armed.pop(e.step, None)


def _next_evaluated(state: State, e: ev.Event) -> None:
    for target in e.data.get("fired") or ():
        state.step(target).armed = True
        state.armed[target] = None
    unhandled = e.data.get("unhandled")
    if unhandled:
        state.failures.append(dict(unhandled))


def _loop_done(state: State, e: ev.Event) -> None:
    assert e.step is not None
    status = str(e.data.get("status", COMPLETED))
    state.results[e.step] = e.data.get("result")
    st = state.step(e.step)
    st.output_error = e.data.get("error")
    _finish_step(state, e.step, status, e.data.get("error") if status == FAILED else None)


def _step_failed(state: State, e: ev.Event) -> None:
    assert e.step is not None
    error = dict(e.data.get("error") or {})
    state.step(e.step).output_error = error
    state.results[e.step] = None
    _finish_step(state, e.step, FAILED, error)


def _terminal(state: State, e: ev.Event) -> None:
    state.status = {
        ev.PLAYBOOK_COMPLETED: COMPLETED,
        ev.PLAYBOOK_FAILED: FAILED,
        ev.PLAYBOOK_CANCELLED: CANCELLED,
    }[e.name]
    state.error = e.data.get("error")
    state.final_result = e.data.get("final_result")
    state.completed_at = e.at


_HANDLERS = {
    ev.PLAYBOOK_INITIALIZED: _initialized,
    ev.STEP_ENTER: _step_enter,
    ev.COMMAND_ISSUED: _command_issued,
    ev.CALL_DONE: _call_outcome,
    ev.CALL_ERROR: _call_outcome,
    ev.CALL_WAITING: _call_waiting,
    ev.COMMAND_COMPLETED: _command_terminal,
    ev.COMMAND_FAILED: _command_terminal,
    ev.COMMAND_CANCELLED: _command_terminal,
    ev.CTX_UPDATED: _ctx_updated,
    ev.STEP_SKIPPED: _step_skipped,
    ev.NEXT_EVALUATED: _next_evaluated,
    ev.LOOP_DONE: _loop_done,
    ev.STEP_FAILED: _step_failed,
    ev.PLAYBOOK_COMPLETED: _terminal,
    ev.PLAYBOOK_FAILED: _terminal,
    ev.PLAYBOOK_CANCELLED: _terminal,
}


def snapshot(state: State) -> dict[str, Any]:
    """The state as plain JSON (for the replay API and checksums)."""
    from dataclasses import asdict

    out = asdict(state)
    out["loop_results"] = {
        step: {str(i): r for i, r in sorted(results.items())} for step, results in state.loop_results.items()
    }
    return out


def checksum(state: State) -> str:
    """sha256 of the canonical JSON of :func:`snapshot`: equal states, equal checksums."""
    import hashlib
    import json

    text = json.dumps(snapshot(state), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
