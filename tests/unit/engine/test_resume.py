"""A re-run from a step (the UI's "re-run from step"): the first event names the step and carries
what the steps before it left; the engine starts there and renders with those results."""

from __future__ import annotations

import textwrap
from dataclasses import replace

from noetl.dsl.parser import parse
from noetl.engine import events as ev
from noetl.engine.decide import decide, initial_event, resume_step
from noetl.engine.state import State, apply

PLAYBOOK = textwrap.dedent(
    """
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: resume}
    workload: {base: 1}
    workflow:
      - step: start
        tool: {kind: python, code: "result = 10"}
        next: {arcs: [{step: middle}]}
      - step: middle
        tool: {kind: python, input: {x: "{{ start }}", b: "{{ base }}"}, code: "result = x + b"}
        next: {arcs: [{step: end}]}
      - step: end
        tool: {kind: python, code: "result = 0"}
    """
)


def _start(resume: dict[str, object] | None) -> tuple[State, list[ev.Command]]:
    pb = parse(PLAYBOOK)
    first = initial_event(pb, "7", None, 1000.0)
    if resume is not None:
        first = replace(first, data={**first.data, "resume": resume})
    state = State()
    decision = decide(pb, state, first, 1000.0)
    for event in [first, *decision.events]:
        apply(state, event)
    return state, decision.commands


def test_an_ordinary_run_starts_at_the_entry_step() -> None:
    _, commands = _start(None)
    assert [c.step for c in commands] == ["start"]


def test_a_rerun_starts_at_the_named_step_with_the_carried_results_and_variables() -> None:
    resume = {"from_step": "middle", "results": {"start": 10}, "variables": {"base": 5}}
    state, commands = _start(resume)
    assert [c.step for c in commands] == ["middle"]
    assert state.results["start"] == 10
    assert state.variables["base"] == 5
    assert commands[0].context["start"] == 10


def test_an_unknown_resume_step_falls_back_to_the_entry_step() -> None:
    pb = parse(PLAYBOOK)
    first = initial_event(pb, "7", None, 1000.0)
    assert resume_step(pb, replace(first, data={**first.data, "resume": {"from_step": "nope"}})) is None
    _, commands = _start({"from_step": "nope"})
    assert [c.step for c in commands] == ["start"]
