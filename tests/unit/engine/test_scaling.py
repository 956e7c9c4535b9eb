"""A long chain costs the engine O(1) work per step, counted, not timed (issue 17, item 6).

A chain of 3,000 ``noop`` steps is driven through ``advance`` (as the drivers do) and three kinds of
work are counted: step results turned into render views (each context used to hold every result
so far), step results shipped in command contexts, and step states looked at while settling (each
event used to scan every step that ran). Before the fix each grew with the square of the chain's
length (about 4.5 million for 3,000 steps); now each is a small constant per step. The static graph
is checked too: it no longer keeps, per step, the set of every step it reaches.
"""

from __future__ import annotations

from typing import Any

import pytest

from noetl.dsl import templates
from noetl.dsl.parser import parse
from noetl.engine import events as ev
from noetl.engine.decide import advance, initial_event
from noetl.engine.graph import graph_of
from noetl.engine.state import State, StepState

STEPS = 3_000


def chain(steps: int) -> str:
    lines = ["apiVersion: noetl.io/v2", "kind: Playbook", "metadata: {name: chain}", "workflow:"]
    for k in range(1, steps + 1):
        lines += [f"  - step: s{k}", "    tool: {kind: noop}"]
        if k < steps:
            lines.append(f"    next: {{arcs: [{{step: s{k + 1}}}]}}")
    return "\n".join(lines) + "\n"


class CountingSteps(dict[str, StepState]):
    """``State.steps`` that counts the step states handed out by whole-map iteration."""

    examined = 0

    def items(self) -> Any:
        CountingSteps.examined += len(self)
        return super().items()

    def values(self) -> Any:
        CountingSteps.examined += len(self)
        return super().values()

    def __iter__(self) -> Any:
        CountingSteps.examined += len(self)
        return super().__iter__()


def run_chain(steps: int) -> tuple[State, int]:
    """Drive the chain to its end, completing every command; the state and the results shipped."""
    playbook = parse(chain(steps))
    state = State()
    state.steps = CountingSteps()
    shipped = 0
    event = initial_event(playbook, "7", {}, 1.0)
    pending: list[ev.Command] = []
    while True:
        decision = advance(playbook, state, event, 1.0)
        pending.extend(decision.commands)
        shipped += sum(len(c.context.get("steps", {})) for c in decision.commands)
        if state.terminal or not pending:
            return state, shipped
        command = pending.pop(0)
        data = {"index": None, "result": {"k": command.step}, "error": None, "context_updates": {}}
        advance(playbook, state, ev.Event(ev.CALL_DONE, command.step, command.id, data, 1.0), 1.0)
        event = ev.Event(ev.COMMAND_COMPLETED, command.step, command.id, {"index": None}, 1.0)


def test_a_long_chain_costs_constant_work_per_step(monkeypatch: pytest.MonkeyPatch) -> None:
    views = 0
    result_view = templates.result_view

    def counted(value: Any) -> Any:
        nonlocal views
        views += 1
        return result_view(value)

    monkeypatch.setattr(templates, "result_view", counted)
    CountingSteps.examined = 0

    state, shipped = run_chain(STEPS)

    assert state.status == "COMPLETED" and len(state.executed) == STEPS
    assert state.final_result == {"k": f"s{STEPS}"}
    # each step's context holds the results the step can name (its own, the next step's): not all
    assert shipped <= 2 * STEPS, shipped
    assert views <= 10 * STEPS, views
    assert CountingSteps.examined <= 10 * STEPS, CountingSteps.examined


def test_the_graph_of_a_long_chain_is_linear() -> None:
    playbook = parse(chain(STEPS))
    graph = graph_of(playbook)
    assert not any(graph.is_back_edge(f"s{k}", f"s{k + 1}") for k in range(1, STEPS))
    assert graph.reaches("s1", f"s{STEPS}") and not graph.reaches(f"s{STEPS}", "s1")
    # reachability is computed only when asked (fan-in barriers), never for every pair up front:
    # here the steps s1 reaches, and none for s3000
    assert sum(len(found) for found in graph._reach.values()) == STEPS - 1
