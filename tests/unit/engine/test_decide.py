"""The engine as a function: feed events, compare the decisions. No I/O, no fixtures, no mocks."""

from __future__ import annotations

import textwrap
from typing import Any

from noetl.dsl.parser import parse
from noetl.engine import events as ev
from noetl.engine.decide import Limits, decide, initial_event
from noetl.engine.state import State, apply, fold


class Sim:
    """A tiny driver: keeps the log, folds, and lets a test complete commands by hand."""

    def __init__(
        self, text: str, payload: dict[str, Any] | None = None, limits: Limits | None = None
    ) -> None:
        self.pb = parse(textwrap.dedent(text))
        self.state = State()
        self.log: list[ev.Event] = []
        self.limits = limits or Limits()
        self.now = 1000.0
        self.pending: dict[str, ev.Command] = {}
        self.last = self.feed(initial_event(self.pb, "42", payload, self.now))

    def feed(self, event: ev.Event) -> Any:
        decision = decide(self.pb, self.state, event, self.now, self.limits)
        for e in [event, *decision.events]:
            self.log.append(e)
            apply(self.state, e)
        for c in decision.commands:
            self.pending[c.id] = c
        self.now += 1
        return decision

    def cmd(self, step: str, index: int | None = None) -> ev.Command:
        return next(c for c in self.pending.values() if c.step == step and c.index == index)

    def complete(
        self,
        command: ev.Command,
        result: Any = None,
        ok: bool = True,
        error: dict[str, Any] | None = None,
        updates: dict[str, Any] | None = None,
    ) -> Any:
        self.pending.pop(command.id, None)
        data = {
            "index": command.index,
            "result": result,
            "error": error if not ok else None,
            "context_updates": updates or {},
        }
        call = ev.Event(ev.CALL_DONE if ok else ev.CALL_ERROR, command.step, command.id, data, self.now)
        decision_call = decide(self.pb, self.state, call, self.now)
        assert decision_call.events == [] and decision_call.commands == []
        self.log.append(call)
        apply(self.state, call)
        name = ev.COMMAND_COMPLETED if ok else ev.COMMAND_FAILED
        return self.feed(ev.Event(name, command.step, command.id, {"index": command.index}, self.now))

    def names(self, decision: Any) -> list[tuple[str, str | None]]:
        return [(e.name, e.step) for e in decision.events]


CHAIN = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: chain}
workload: {x: 1}
workflow:
  - step: start
    tool: {kind: noop}
    next: {arcs: [{step: b}]}
  - step: b
    tool: {kind: noop}
    set: {ctx.y: "{{ output.data.v + x }}"}
    next: {arcs: [{step: end}]}
  - step: end
    tool: {kind: noop}
"""


def test_initialized_dispatches_entry_step():
    sim = Sim(CHAIN)
    assert sim.names(sim.last) == [("step.enter", "start"), ("command.issued", "start")]
    [command] = sim.last.commands
    assert command.id == "42:1" and command.step == "start" and command.context["x"] == 1


def test_completion_sets_then_routes():
    sim = Sim(CHAIN)
    sim.complete(sim.cmd("start"), {"v": 1})
    d = sim.complete(sim.cmd("b"), {"v": 10})
    assert sim.names(d)[0] == ("ctx.updated", "b")
    assert d.events[0].data["values"] == {"y": 11}
    assert ("command.issued", "end") in sim.names(d)
    assert sim.cmd("end").context["y"] == 11
    d = sim.complete(sim.cmd("end"), {"final": True})
    assert d.events[-1].name == ev.PLAYBOOK_COMPLETED
    assert d.events[-1].data["final_result"] == {"final": True}
    assert sim.state.status == "COMPLETED"
    assert sim.state.executed == ["start", "b", "end"]


def test_duplicate_terminal_event_changes_nothing():
    sim = Sim(CHAIN)
    c = sim.cmd("start")
    sim.complete(c, {"v": 1})
    before = sim.state.fork()
    again = decide(sim.pb, sim.state, ev.Event(ev.COMMAND_COMPLETED, "start", c.id, {"index": None}), 5000.0)
    assert again.events == [] and again.commands == []
    late = ev.Event(ev.CALL_DONE, "start", c.id, {"result": {"v": 999}})
    apply(sim.state, late)
    apply(sim.state, ev.Event(ev.COMMAND_COMPLETED, "start", c.id, {}))
    assert sim.state.results == before.results and sim.state.executed == before.executed


def test_after_terminal_nothing_is_decided():
    sim = Sim(CHAIN)
    sim.complete(sim.cmd("start"), {"v": 1})
    sim.complete(sim.cmd("b"), {"v": 1})
    sim.complete(sim.cmd("end"))
    d = decide(sim.pb, sim.state, ev.Event(ev.CANCEL_REQUESTED, data={}), 1.0)
    assert d.events == [] and d.commands == []


def test_decide_is_deterministic_and_does_not_touch_its_state():
    sim = Sim(CHAIN)
    c = sim.cmd("start")
    sim.log.append(ev.Event(ev.CALL_DONE, "start", c.id, {"result": {"v": 2}}))
    apply(sim.state, sim.log[-1])
    snapshot = fold(sim.log)
    done = ev.Event(ev.COMMAND_COMPLETED, "start", c.id, {"index": None})
    d1 = decide(sim.pb, sim.state, done, 7.0)
    d2 = decide(sim.pb, sim.state, done, 7.0)
    assert d1 == d2
    assert sim.state == snapshot


def test_fold_twice_gives_equal_state():
    sim = Sim(CHAIN)
    sim.complete(sim.cmd("start"), {"v": 1})
    sim.complete(sim.cmd("b"), {"v": 2})
    sim.complete(sim.cmd("end"), "done")
    assert fold(sim.log) == fold(sim.log) == sim.state
    assert fold(sim.log[:5]) == fold(sim.log[:5])


EXCLUSIVE = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: ex}
workflow:
  - step: start
    tool: {kind: noop}
    next:
      spec: {mode: exclusive}
      arcs:
        - {step: a, when: "{{ start.go == 'a' }}"}
        - {step: b, when: "{{ start.go == 'b' }}"}
        - {step: c}
  - {step: a, tool: {kind: noop}}
  - {step: b, tool: {kind: noop}}
  - {step: c, tool: {kind: noop}}
"""


def test_exclusive_fires_first_match_and_skips_the_rest():
    sim = Sim(EXCLUSIVE)
    d = sim.complete(sim.cmd("start"), {"go": "b"})
    names = sim.names(d)
    assert ("step.skipped", "a") in names and ("step.skipped", "c") in names
    assert [c.step for c in d.commands] == ["b"]


def test_failed_step_without_error_arc_fails_execution():
    sim = Sim(EXCLUSIVE)
    d = sim.complete(sim.cmd("start"), ok=False, error={"kind": "python", "message": "boom"})
    assert d.commands == []
    assert d.events[-1].name == ev.PLAYBOOK_FAILED
    assert d.events[-1].data["error"] == {"step": "start", "kind": "python", "message": "boom"}


FAN = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: fan}
workflow:
  - step: start
    tool: {kind: noop}
    next: {spec: {mode: inclusive}, arcs: [{step: left}, {step: right}]}
  - step: left
    tool: {kind: noop}
    next: {arcs: [{step: join}]}
  - step: right
    tool: {kind: noop}
    next: {arcs: [{step: join}]}
  - step: join
    tool: {kind: noop, input: {both: "{{ left }} {{ right }}"}}
"""


def test_fan_in_barrier_waits_for_both_branches():
    sim = Sim(FAN)
    d = sim.complete(sim.cmd("start"))
    assert sorted(c.step for c in d.commands) == ["left", "right"]
    d = sim.complete(sim.cmd("left"), "L")
    assert d.commands == [] and sim.state.steps["join"].armed
    d = sim.complete(sim.cmd("right"), "R")
    assert [c.step for c in d.commands] == ["join"]
    assert d.commands[0].context["left"] == "L" and d.commands[0].context["right"] == "R"
    # a command carries the results its step can name, not every result so far (issue 17)
    assert "start" not in d.commands[0].context and set(d.commands[0].context["steps"]) == {"left", "right"}
    d = sim.complete(sim.cmd("join"))
    assert d.events[-1].name == ev.PLAYBOOK_COMPLETED


def test_fan_in_does_not_wait_for_a_branch_that_cannot_run():
    sim = Sim(
        FAN.replace(
            "arcs: [{step: left}, {step: right}]", "arcs: [{step: left}, {step: right, when: '{{ false }}'}]"
        )
    )
    d = sim.complete(sim.cmd("start"))
    assert [c.step for c in d.commands] == ["left"]
    d = sim.complete(sim.cmd("left"))
    assert [c.step for c in d.commands] == ["join"]


LOOP = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: loop}
workflow:
  - step: start
    loop: {in: "{{ items }}", iterator: it, spec: {mode: MODE, max_in_flight: 2}}
    tool: {kind: noop}
    next: {arcs: [{step: after, when: "{{ event.name == 'loop.done' }}"}]}
  - step: after
    tool: {kind: noop}
"""


def test_sequential_loop_dispatches_one_at_a_time():
    sim = Sim(LOOP.replace("MODE", "sequential"), {"items": ["a", "b", "c"]})
    assert [(c.step, c.index) for c in sim.last.commands] == [("start", 0)]
    assert sim.last.commands[0].context["iter"]["it"] == "a"
    d = sim.complete(sim.cmd("start", 0), "A")
    assert [(c.index, c.context["it"]) for c in d.commands] == [(1, "b")]
    sim.complete(sim.cmd("start", 1), "B")
    d = sim.complete(sim.cmd("start", 2), "C")
    loop_done = [e for e in d.events if e.name == ev.LOOP_DONE]
    assert loop_done[0].data["result"] == {
        "results": ["A", "B", "C"],
        "stats": {"total": 3, "succeeded": 3, "failed": 0},
    }
    assert [c.step for c in d.commands] == ["after"]


def test_parallel_loop_tops_up_to_max_in_flight():
    sim = Sim(LOOP.replace("MODE", "parallel"), {"items": list(range(5))})
    assert [c.index for c in sim.last.commands] == [0, 1]
    d = sim.complete(sim.cmd("start", 1), 1)
    assert [c.index for c in d.commands] == [2]
    sim.complete(sim.cmd("start", 0), 0)
    sim.complete(sim.cmd("start", 2), 2)
    d = sim.complete(sim.cmd("start", 3), 3)
    assert d.commands == []
    d = sim.complete(sim.cmd("start", 4), 4)
    assert [c.step for c in d.commands] == ["after"]
    assert sim.state.results["start"]["results"] == [0, 1, 2, 3, 4]


def test_parallel_default_is_capped_by_limit():
    sim = Sim(
        LOOP.replace("MODE", "parallel").replace(", max_in_flight: 2", ""),
        {"items": list(range(10))},
        limits=Limits(max_parallel=3),
    )
    assert len(sim.last.commands) == 3


def test_loop_over_invalid_collection_fails_step():
    sim = Sim(LOOP.replace("MODE", "sequential"), {"items": None})
    assert sim.last.events[-1].name == ev.PLAYBOOK_FAILED
    err = sim.last.events[-1].data["error"]
    assert err["step"] == "start" and "loop.in" in err["message"]


def test_cancel_cancels_in_flight_commands():
    sim = Sim(FAN)
    sim.complete(sim.cmd("start"))
    d = sim.feed(ev.Event(ev.CANCEL_REQUESTED, data={"reason": "user"}))
    assert [e.name for e in d.events] == [ev.COMMAND_CANCELLED, ev.COMMAND_CANCELLED, ev.PLAYBOOK_CANCELLED]
    assert sim.state.status == "CANCELLED" and sim.state.commands == {}


def test_context_updates_from_tasks_are_recorded():
    sim = Sim(CHAIN)
    sim.complete(sim.cmd("start"), {"v": 1}, updates={"from_task": 5})
    assert sim.state.variables["from_task"] == 5
    assert sim.cmd("b").context["from_task"] == 5


def test_a_loop_beyond_the_inline_limit_keeps_its_results_in_the_log_only():
    """DECISIONS 19: the state holds no per-iteration results; loop.done carries a reference."""
    sim = Sim(LOOP.replace("MODE", "parallel"), {"items": ["a", "b", "c"]}, limits=Limits(inline_results=2))
    [enter] = [e for e in sim.log if e.name == ev.STEP_ENTER]
    assert enter.data["loop"]["spill"] is True
    sim.complete(sim.cmd("start", 0), "A")
    sim.complete(sim.cmd("start", 1), "B")
    assert sim.state.loop_results["start"] == {}
    d = sim.complete(sim.cmd("start", 2), "C")
    [done] = [e for e in d.events if e.name == ev.LOOP_DONE]
    assert done.data["result"] == {
        "results": {
            "$results": {
                "execution_id": "42",
                "step": "start",
                "after": enter.id,
                "until": done.id,
                "count": 3,
            }
        },
        "stats": {"total": 3, "succeeded": 3, "failed": 0},
    }
    assert [c.step for c in d.commands] == ["after"]  # routing on event/stats works as usual


def test_a_loop_within_the_inline_limit_keeps_its_results_inline():
    sim = Sim(LOOP.replace("MODE", "parallel"), {"items": ["a", "b"]}, limits=Limits(inline_results=2))
    [enter] = [e for e in sim.log if e.name == ev.STEP_ENTER]
    assert "spill" not in enter.data["loop"]
    sim.complete(sim.cmd("start", 0), "A")
    d = sim.complete(sim.cmd("start", 1), "B")
    [done] = [e for e in d.events if e.name == ev.LOOP_DONE]
    assert done.data["result"]["results"] == ["A", "B"]


def test_a_waiting_command_stays_in_flight_until_its_outcome_then_routes_as_usual():
    """``call.waiting`` (a parked sub-playbook call) decides nothing; the command stays in flight,
    the cancel rule still reaches it, and its later outcome routes as any other (issue 19)."""
    sim = Sim(CHAIN)
    start = sim.cmd("start")
    wait = {"kind": "playbook", "execution_id": "77", "seconds": None}
    waiting = ev.Event(ev.CALL_WAITING, "start", start.id, {"index": None, "wait": wait}, sim.now)
    d = sim.feed(waiting)
    assert d.events == [] and d.commands == []
    assert sim.state.commands[start.id].waiting == wait and sim.state.commands[start.id].outcome is None
    d = sim.complete(start, {"v": 1})
    assert ("command.issued", "b") in sim.names(d)
    assert start.id not in sim.state.commands
    assert fold(sim.log).commands.keys() == sim.state.commands.keys()


def test_cancelling_reaches_a_waiting_command():
    sim = Sim(CHAIN)
    start = sim.cmd("start")
    sim.feed(ev.Event(ev.CALL_WAITING, "start", start.id, {"wait": {"kind": "playbook"}}, sim.now))
    d = sim.feed(ev.Event(ev.CANCEL_REQUESTED, data={"reason": "stop"}))
    assert sim.names(d) == [("command.cancelled", "start"), ("playbook.cancelled", None)]
