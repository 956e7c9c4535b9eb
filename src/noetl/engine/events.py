"""Events and commands: the vocabulary between the engine and its drivers.

An :class:`Event` is one immutable fact in an execution's log. The engine emits some (step
entered, command issued, variables updated, loop done, playbook completed); the party that runs
a command emits the others (command started, call done or failed, step exit, command completed
or failed). Names are the persisted names of REFERENCE §5.2.

``call.waiting`` ends a run of a command that waits for something needing no CPU - today a
sub-playbook's end (``data.wait = {kind: "playbook", execution_id, seconds}``); a timer or an
external event fits the same shape (``kind`` and what to wait for). The command stays in flight,
holding no worker slot, until what it waits for wakes it; it then runs again and reports its
outcome as usual (see :mod:`noetl.engine.state`).

A :class:`Command` is one unit of work for a worker: run the tool(s) of one step, or of one loop
iteration of a step, with a render context snapshot.

Ids: ``Event.id`` is the position in the execution's log, assigned by the log when the event is
appended (0 until then). ``Command.id`` is assigned by the engine (``<execution_id>:<n>``), so
decisions are deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PLAYBOOK_INITIALIZED = "playbook.initialized"
STEP_ENTER = "step.enter"
COMMAND_ISSUED = "command.issued"
COMMAND_STARTED = "command.started"
CALL_DONE = "call.done"
CALL_ERROR = "call.error"
CALL_WAITING = "call.waiting"
STEP_EXIT = "step.exit"
COMMAND_COMPLETED = "command.completed"
COMMAND_FAILED = "command.failed"
COMMAND_CANCELLED = "command.cancelled"
COMMAND_REISSUED = "command.reissued"
"""Written by the reaper when a dead worker's lease expired and its command was queued again (the
fold ignores it: the command stays in flight and its next attempt reports as usual)."""
STEP_SKIPPED = "step.skipped"
CTX_UPDATED = "ctx.updated"
LOOP_DONE = "loop.done"
TEMPLATE_WARNING = "template.warning"
NEXT_EVALUATED = "next.evaluated"
STEP_FAILED = "step.failed"
CANCEL_REQUESTED = "execution.cancel_requested"
PLAYBOOK_COMPLETED = "playbook.completed"
PLAYBOOK_FAILED = "playbook.failed"
PLAYBOOK_CANCELLED = "playbook.cancelled"

TERMINAL_EVENTS = frozenset({PLAYBOOK_COMPLETED, PLAYBOOK_FAILED, PLAYBOOK_CANCELLED})
COMMAND_TERMINAL_EVENTS = frozenset({COMMAND_COMPLETED, COMMAND_FAILED, COMMAND_CANCELLED})


@dataclass(frozen=True, slots=True)
class Event:
    """One fact in the log. ``data`` is JSON; ``at`` is seconds since the epoch."""

    name: str
    step: str | None = None
    command_id: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    at: float = 0.0
    id: int = 0

    def to_dict(self, execution_id: str) -> dict[str, Any]:
        """The JSON-lines form written by ``--events`` and returned by the API."""
        return {
            "event_id": self.id,
            "execution_id": execution_id,
            "event_type": self.name,
            "step": self.step,
            "command_id": self.command_id,
            "timestamp": self.at,
            "data": dict(self.data),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Event:
        return cls(
            name=str(raw["event_type"]),
            step=raw.get("step"),
            command_id=raw.get("command_id"),
            data=dict(raw.get("data") or {}),
            at=float(raw.get("timestamp") or 0.0),
            id=int(raw.get("event_id") or 0),
        )


@dataclass(frozen=True, slots=True)
class Command:
    """Run the tool(s) of ``step`` (iteration ``index`` of a loop step) with ``context``.

    ``context`` is the render context the task runner starts from: execution variables, results
    of earlier steps, ``execution_id``, and for loop iterations ``iter``/``_index``/``_total``.
    """

    id: str
    execution_id: str
    step: str
    context: Mapping[str, Any]
    index: int | None = None
    attempt: int = 1
    priority: int = 0
