"""Turning a command's outcome into the events a worker reports (REFERENCE §5.6).

One batch per command: ``call.done`` (or ``call.error``) carrying the result envelope,
``step.exit`` (informative), and the terminal ``command.completed`` (or ``command.failed``) that
the engine routes on. Shared by the local runtime and distributed workers.
"""

from __future__ import annotations

from typing import Any

from noetl.engine import events as ev
from noetl.runtime.runner import Outcome


def outcome_events(command: ev.Command, outcome: Outcome, now: float) -> list[ev.Event]:
    ok = outcome.status == "ok"
    index = command.index
    call: dict[str, Any] = {
        "index": index,
        "result": outcome.result,
        "error": outcome.error,
        "context_updates": outcome.context_updates,
        "attempts": outcome.attempts,
        "duration_ms": round(outcome.duration_ms, 3),
    }
    if outcome.failed_task is not None:
        call["failed_task"] = outcome.failed_task
    step, cid = command.step, command.id
    terminal: dict[str, Any] = {"index": index}
    if not ok:
        terminal["error"] = outcome.error
    warnings = [ev.Event(ev.TEMPLATE_WARNING, step, cid, dict(w), now) for w in outcome.warnings]
    return [
        *warnings,
        ev.Event(ev.CALL_DONE if ok else ev.CALL_ERROR, step, cid, call, now),
        ev.Event(ev.STEP_EXIT, step, cid, {"index": index, "status": "COMPLETED" if ok else "FAILED"}, now),
        ev.Event(ev.COMMAND_COMPLETED if ok else ev.COMMAND_FAILED, step, cid, terminal, now),
    ]
