"""Decide what happens next: the transition rules of a NoETL execution, in one place.

``decide(playbook, state, event, now)`` takes the state *before* ``event`` and returns the
events and commands that follow from it (``event`` itself is not repeated). It does no I/O and
reads no clock: ``now`` is an argument and command ids count up from the state. Drivers fold
``event`` and then the returned events into their state.

The rules (REFERENCE §4, DECISIONS 3-6, 10, 15-19, 24):

1. *Start.* On ``playbook.initialized`` the entry step is dispatched: ``executor.spec.entry_step``,
   else ``start``, else the first step.
2. *Dispatch.* A step about to run is first checked against its admission rules
   (``spec.policy.admit``). Denied: ``step.skipped``, and routing continues through the skipped
   step's own arcs (first arc that matches), repeating through chains of skipped steps. Allowed:
   ``step.enter`` and one ``command.issued``; for a loop step, ``loop.in`` is rendered (a list; a map
   becomes ``{key, value}`` items; a number n becomes 0..n-1; anything else fails the step) and
   iterations are issued: one at a time (``sequential``) or up to ``max_in_flight`` (``parallel``,
   default: the number of items capped by ``Limits.max_parallel``). An empty loop finishes at once.
3. *Finish.* ``command.completed``/``command.failed`` of a command still in flight records its
   outcome (a command that is not in flight any more is a duplicate and changes nothing). A loop
   step finishes when every dispatched iteration has finished and nothing more will be
   dispatched; under ``fail_fast`` the first failed iteration stops new dispatch.
4. *Set and route.* A finished step's ``set`` is rendered with ``output`` and recorded as
   ``ctx.updated`` before its arcs are evaluated. Arcs are evaluated with ``output`` and ``event``
   (``call.done``, ``call.error`` or ``loop.done``). ``exclusive``: the first matching arc fires and
   the other targets that never ran are ``step.skipped``; ``inclusive``: all matching arcs fire.
   An arc without ``when`` matches a successful step only. A ``when`` that fails to render does not
   match and leaves a ``template.warning``. A fired arc's ``set`` is recorded, then its target is
   dispatched. ``end`` with no step of that name ends the branch.
5. *Failure.* A failed step whose error no arc handled is an unhandled failure: nothing new is
   dispatched, and the execution fails once the commands in flight have finished. With
   ``executor.spec.no_next_is_error`` a successful step (other than ``end``/``final_step``) with
   arcs none of which matched is an unhandled failure too.
6. *Fan-in.* A step with several forward upstreams (arcs into it from steps it cannot reach) runs
   once, when every upstream that can still run has finished; until then it stays armed.
   Back-edges (a target that can reach its source) re-run finished steps: workflow loops.
7. *Completion.* With nothing in flight and nothing armed: ``playbook.failed`` if an unhandled
   failure was recorded, else ``playbook.completed``. The final result is the result of
   ``executor.spec.final_step``, else of ``end`` if it ran, else of the step that finished last.
8. *Cancellation.* ``execution.cancel_requested`` cancels every command in flight
   (``command.cancelled``) and ends the execution with ``playbook.cancelled``.
9. *Terminal.* After a terminal event nothing more is decided.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from noetl.dsl import templates
from noetl.dsl.model import Playbook, Step
from noetl.engine import context as rctx
from noetl.engine import events as ev
from noetl.engine.graph import Graph, graph_of
from noetl.engine.state import (
    COMPLETED,
    FAILED,
    PENDING,
    RUNNING,
    SKIPPED,
    TERMINAL_STEP,
    State,
    apply,
)
from noetl.errors import TemplateError


@dataclass(frozen=True, slots=True)
class Limits:
    """Engine settings that a deployment may change."""

    max_parallel: int = 64
    inline_results: int = 10_000
    """A loop with more items keeps its per-iteration results in the event log only: ``loop.done``
    carries a reference (``context.results_ref``) that drivers hydrate for tasks (DECISIONS 19)."""


DEFAULT_LIMITS = Limits()


@dataclass(slots=True)
class Decision:
    events: list[ev.Event] = field(default_factory=list)
    commands: list[ev.Command] = field(default_factory=list)


def initial_event(
    playbook: Playbook,
    execution_id: str,
    payload: dict[str, Any] | None,
    now: float,
    *,
    parent_execution_id: str | None = None,
) -> ev.Event:
    """``playbook.initialized`` for a new execution: workload defaults replaced key by key (DECISIONS 23)."""
    workload = dict(playbook.workload)
    workload.update(payload or {})
    return ev.Event(
        ev.PLAYBOOK_INITIALIZED,
        data={
            "execution_id": execution_id,
            "path": playbook.path,
            "name": playbook.name,
            "workload": workload,
            "parent_execution_id": parent_execution_id,
        },
        at=now,
    )


def resume_step(playbook: Playbook, initialized: ev.Event) -> str | None:
    """The step a re-run starts from (``playbook.initialized`` ``resume.from_step``), when it names
    one of the playbook's steps; None for an ordinary run (the entry step)."""
    resume = initialized.data.get("resume")
    step = resume.get("from_step") if isinstance(resume, Mapping) else None
    return step if isinstance(step, str) and step in playbook.steps else None


def decide(
    playbook: Playbook, state: State, event: ev.Event, now: float, limits: Limits = DEFAULT_LIMITS
) -> Decision:
    """The events and commands that follow ``event`` in an execution whose state was ``state``.

    Pure: ``state`` is left as it was. The returned events are numbered after ``event`` (which is
    numbered ``state.last_event_id + 1`` when it comes without an id).
    """
    if state.terminal:
        return Decision()
    return advance(playbook, state.fork(), event, now, limits)


def advance(
    playbook: Playbook, state: State, event: ev.Event, now: float, limits: Limits = DEFAULT_LIMITS
) -> Decision:
    """:func:`decide`, folding ``event`` and the decision's events into ``state`` itself.

    The drivers' fast path: it saves copying the state, which they would fold the same events into
    right afterwards. ``event`` must carry the id ``state.last_event_id + 1`` (or none).
    """
    if state.terminal:
        apply(state, event)
        return Decision()
    decider = _Decider(playbook, state, now, limits)
    decider.handle(event)
    return decider.out


def strip_scope(values: dict[str, Any]) -> dict[str, Any]:
    """``ctx.x``, ``workload.x``, ``vars.x``, ``step.x``, ``iter.x`` -> ``x`` (DECISIONS 24)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        prefix, dot, rest = key.partition(".")
        out[rest if dot and prefix in ("ctx", "workload", "vars", "step", "iter") else key] = value
    return out


class _Decider:
    """Applies the rules above to one event, folding its own events as it goes."""

    def __init__(self, playbook: Playbook, work: State, now: float, limits: Limits) -> None:
        self.pb = playbook
        self.s = work
        self.now = now
        self.limits = limits
        self.graph: Graph = graph_of(playbook)
        self.out = Decision()
        self._bases: dict[str | None, dict[str, Any]] = {}

    # -- plumbing -------------------------------------------------------------------------------

    def emit(self, name: str, step: str | None = None, command_id: str | None = None, **data: Any) -> None:
        event = ev.Event(name, step, command_id, data, self.now, self.s.last_event_id + 1)
        apply(self.s, event)
        self.out.events.append(event)
        if name in (ev.CTX_UPDATED, ev.LOOP_DONE, ev.STEP_FAILED) or (
            name == ev.COMMAND_COMPLETED or name == ev.COMMAND_FAILED
        ):
            self._bases.clear()

    def base(self, step: str | None = None) -> dict[str, Any]:
        """The render context of ``step``'s templates: only the results it can name
        (:meth:`Graph.reads`), so a step's cost does not grow with the steps run before it."""
        reads = self.graph.reads(step) if step is not None else None
        key = None if reads is None else step
        found = self._bases.get(key)
        if found is None:
            found = self._bases[key] = rctx.base(self.s, reads)
        return found

    def warn(self, step: str, template: str, exc: TemplateError) -> None:
        self.emit(ev.TEMPLATE_WARNING, step, template=template, message=str(exc.message))

    # -- entry ----------------------------------------------------------------------------------

    def handle(self, event: ev.Event) -> None:
        if not event.id:
            event = replace(event, id=self.s.last_event_id + 1)
        name = event.name
        if name == ev.PLAYBOOK_INITIALIZED:
            apply(self.s, event)
            self.dispatch(resume_step(self.pb, event) or self.pb.entry_step, source=None)
        elif name in (ev.COMMAND_COMPLETED, ev.COMMAND_FAILED):
            cmd = self.s.commands.get(event.command_id or "")
            apply(self.s, event)
            self._bases.clear()
            if cmd is None:
                return  # duplicate terminal event: recorded once already
            self.command_finished(cmd.step, cmd.index)
        elif name == ev.CANCEL_REQUESTED:
            apply(self.s, event)
            self.cancel(str(event.data.get("reason") or "cancelled"))
            return
        else:
            apply(self.s, event)
            return
        self.settle()

    def cancel(self, reason: str) -> None:
        running = list(dict.fromkeys(cmd.step for cmd in self.s.commands.values()))
        for command_id, cmd in list(self.s.commands.items()):
            self.emit(ev.COMMAND_CANCELLED, cmd.step, command_id, reason=reason)
        self.emit(
            ev.PLAYBOOK_CANCELLED,
            # the step (or steps) it stopped in; None when nothing was running
            error={"step": ", ".join(running) or None, "kind": "cancelled", "message": reason},
            final_result=self.final_result(),
        )

    # -- finishing ------------------------------------------------------------------------------

    def command_finished(self, step_name: str, index: int | None) -> None:
        step = self.pb.steps[step_name]
        st = self.s.steps[step_name]
        if index is not None and st.loop is not None:
            self.advance_loop(step)
        else:
            self.step_finished(
                step, st.status == COMPLETED, ev.CALL_DONE if st.status == COMPLETED else ev.CALL_ERROR
            )

    def advance_loop(self, step: Step) -> None:
        loop = self.s.steps[step.name].loop
        assert loop is not None
        stopping = bool(self.s.failures) or (loop.failed > 0 and step.failure_mode == "fail_fast")
        if not stopping:
            while loop.in_flight < loop.max_in_flight and loop.next_index < loop.total:
                self.issue(step, loop.next_index)
        if loop.in_flight == 0 and (stopping or loop.next_index >= loop.total):
            self.finish_loop(step)

    def finish_loop(self, step: Step) -> None:
        st = self.s.steps[step.name]
        loop = st.loop
        assert loop is not None
        results: Any
        if loop.spill:
            until = self.s.last_event_id + 1  # the id loop.done gets below
            results = rctx.results_ref(self.s.execution_id, step.name, loop.entered, until, loop.next_index)
        else:
            ran = self.s.loop_results.get(step.name, {})
            results = [ran.get(i) for i in range(loop.next_index)]
        stats = {"total": loop.total, "succeeded": loop.succeeded, "failed": loop.failed}
        failed = loop.failed > 0 and step.failure_mode == "fail_fast"
        error = None
        if loop.failed:
            first = (loop.first_error or {}).get("message", "")
            error = {
                "kind": "loop",
                "message": f"{loop.failed} of {loop.total} iterations failed; first error: {first}",
                "first_error": loop.first_error,
            }
        self.emit(
            ev.LOOP_DONE,
            step.name,
            status=FAILED if failed else COMPLETED,
            result={"results": results, "stats": stats},
            error=error,
        )
        # a failed loop is routed in the error context (DECISIONS 15): event.name is call.error
        self.step_finished(step, not failed, ev.CALL_ERROR if failed else ev.LOOP_DONE)

    def step_finished(self, step: Step, ok: bool, event_name: str) -> None:
        st = self.s.steps[step.name]
        output = rctx.envelope(ok, self.s.results.get(step.name), st.output_error)
        ctx = rctx.routing(self.base(step.name), step.name, event_name, output, self.now)
        if ok and step.set:
            try:
                values = templates.render(dict(step.set), ctx)
            except TemplateError as exc:
                self.unhandled(step.name, {"kind": "template", "message": f"step set: {exc.message}"})
                return
            assert isinstance(values, dict)
            self.emit(ev.CTX_UPDATED, step.name, values=strip_scope(values), source="step")
            ctx = rctx.routing(self.base(step.name), step.name, event_name, output, self.now)
        self.route(step, ok, ctx, st.output_error)

    def unhandled(self, step: str, error: dict[str, Any]) -> None:
        failure = {"step": step, "kind": error.get("kind", "error"), "message": error.get("message", "")}
        self.emit(ev.NEXT_EVALUATED, step, fired=[], unhandled=failure)

    # -- routing --------------------------------------------------------------------------------

    def route(self, step: Step, ok: bool, ctx: dict[str, Any], error: dict[str, Any] | None) -> None:
        router = step.next
        if router is None or not router.arcs:
            if not ok:
                self.unhandled(step.name, error or {"kind": "error", "message": "step failed"})
            return
        fired = []
        for arc in router.arcs:
            if arc.when is None:
                match = ok
            else:
                try:
                    match = templates.truthy(templates.evaluate(arc.when, ctx))
                except TemplateError as exc:
                    self.warn(step.name, arc.when, exc)
                    match = False
            if match:
                fired.append(arc)
                if router.mode == "exclusive":
                    break
        if router.mode == "exclusive":
            chosen = {arc.step for arc in fired}
            for arc in router.arcs:
                target = self.s.steps.get(arc.step)
                if (
                    arc.step not in chosen
                    and arc.step in self.pb.steps
                    and (target is None or (target.status == PENDING and not target.armed))
                ):
                    self.emit(ev.STEP_SKIPPED, arc.step, reason="not chosen", source=step.name)
        unhandled = None
        if not fired:
            if not ok:
                e = error or {}
                unhandled = {
                    "step": step.name,
                    "kind": e.get("kind", "error"),
                    "message": e.get("message", "step failed"),
                }
            elif self.pb.executor.no_next_is_error and step.name not in ("end", self.pb.executor.final_step):
                unhandled = {
                    "step": step.name,
                    "kind": "routing",
                    "message": f"no arc of step '{step.name}' matched (executor.spec.no_next_is_error)",
                }
        for arc in fired:
            if arc.set:
                try:
                    values = templates.render(dict(arc.set), ctx)
                except TemplateError as exc:
                    self.warn(step.name, str(dict(arc.set)), exc)
                    continue
                assert isinstance(values, dict)
                self.emit(
                    ev.CTX_UPDATED, step.name, values=strip_scope(values), source="arc", target=arc.step
                )
        targets = [arc.step for arc in fired]
        self.emit(
            ev.NEXT_EVALUATED,
            step.name,
            mode=router.mode,
            fired=[t for t in targets if t in self.pb.steps],
            unhandled=unhandled,
        )
        for name in targets:
            self.dispatch(name, source=step.name)

    def dispatch(self, target: str, source: str | None) -> None:
        if self.s.failures or self.s.terminal:
            return
        if target not in self.pb.steps:
            return  # `end` without a step of that name: the branch ends (DECISIONS 4)
        st = self.s.step(target)
        if st.status == RUNNING:
            return
        if st.status in (COMPLETED, FAILED) and not self.graph.is_back_edge(source, target):
            return
        if self.blocked(target):
            return  # armed; dispatched by settle() once its upstreams have finished
        step = self.pb.steps[target]
        if step.admit and not self.admitted(step):
            self.emit(ev.STEP_SKIPPED, target, reason="admission", source=source)
            self.follow_skipped(step)
            return
        self.enter(step)

    def admitted(self, step: Step) -> bool:
        ctx = self.base(step.name)
        for rule in step.admit:
            if rule.when is None:
                return rule.allow
            try:
                if templates.truthy(templates.evaluate(rule.when, ctx)):
                    return rule.allow
            except TemplateError as exc:
                self.warn(step.name, rule.when, exc)
        return True

    def follow_skipped(self, step: Step) -> None:
        """Skip chain: continue through the skipped step's first matching arc."""
        if step.next is None:
            return
        ctx = self.base(step.name)
        for arc in step.next.arcs:
            try:
                match = arc.when is None or templates.truthy(templates.evaluate(arc.when, ctx))
            except TemplateError as exc:
                self.warn(step.name, arc.when or "", exc)
                match = False
            if match:
                self.emit(
                    ev.NEXT_EVALUATED,
                    step.name,
                    mode="skip",
                    fired=[arc.step] if arc.step in self.pb.steps else [],
                )
                self.dispatch(arc.step, source=step.name)
                return

    def blocked(self, target: str) -> bool:
        """Fan-in barrier: does an upstream of ``target`` that can still run hold it back?"""
        upstreams = self.graph.forward_upstreams.get(target, ())
        if len(upstreams) < 2:
            return False
        live = [
            name
            for name, st in self.s.steps.items()
            if name != target
            and (st.status == RUNNING or (st.armed and st.status not in (COMPLETED, FAILED)))
        ]
        for up in upstreams:
            st = self.s.steps.get(up)
            status = st.status if st is not None else PENDING
            if status == RUNNING or (st is not None and st.armed and status not in TERMINAL_STEP):
                return True
            if status in TERMINAL_STEP:
                continue
            if any(self.graph.reaches(name, up) for name in live):
                return True
        return False

    # -- running --------------------------------------------------------------------------------

    def enter(self, step: Step) -> None:
        if step.loop is None:
            self.emit(ev.STEP_ENTER, step.name)
            self.issue(step, None)
            return
        try:
            items = self.loop_items(step)
            limit = self.loop_limit(step, len(items))
        except TemplateError as exc:
            self.emit(ev.STEP_ENTER, step.name)
            self.fail_step(step, {"kind": "loop", "message": exc.message})
            return
        loop: dict[str, Any] = {"items": items, "max_in_flight": limit, "mode": step.loop.mode}
        if len(items) > self.limits.inline_results:
            loop["spill"] = True
        self.emit(ev.STEP_ENTER, step.name, loop=loop)
        if not items:
            self.finish_loop(step)
            return
        self.advance_loop(step)

    def fail_step(self, step: Step, error: dict[str, Any]) -> None:
        self.emit(ev.STEP_FAILED, step.name, error=error)
        self.step_finished(step, False, ev.CALL_ERROR)

    def loop_items(self, step: Step) -> list[Any]:
        assert step.loop is not None
        raw = templates.render(step.loop.in_, self.base(step.name))
        if isinstance(raw, list):
            return raw
        if isinstance(raw, dict):
            return [{"key": k, "value": v} for k, v in raw.items()]
        if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
            return list(range(raw))
        shown = "null" if raw is None else f"{type(raw).__name__} {raw!r}"[:120]
        raise TemplateError(
            f"loop.in of step '{step.name}' must render to a list (or a map or a count), got {shown}",
            step=step.name,
            field="loop.in",
        )

    def loop_limit(self, step: Step, total: int) -> int:
        assert step.loop is not None
        if step.loop.mode == "sequential":
            return 1
        raw: Any = step.loop.max_in_flight
        if raw is None:
            return max(1, min(total, self.limits.max_parallel))
        if isinstance(raw, str):
            raw = templates.render(raw, self.base(step.name))
        try:
            value = int(raw)
        except (TypeError, ValueError):
            value = 0
        if value < 1:
            raise TemplateError(
                f"loop.spec.max_in_flight of step '{step.name}' must be a positive integer, got {raw!r}",
                step=step.name,
                field="loop.spec.max_in_flight",
            )
        return value

    def issue(self, step: Step, index: int | None) -> None:
        command_id = f"{self.s.execution_id}:{self.s.command_seq + 1}"
        if index is None:
            ctx = dict(self.base(step.name))
        else:
            loop = self.s.steps[step.name].loop
            assert loop is not None and step.loop is not None
            ctx = rctx.iteration(
                self.base(step.name), step.loop.iterator, loop.items[index], index, loop.total
            )
        self.emit(ev.COMMAND_ISSUED, step.name, command_id, index=index, attempt=1)
        self.out.commands.append(
            ev.Command(command_id, self.s.execution_id, step.name, ctx, index, 1, step.priority)
        )

    # -- settling -------------------------------------------------------------------------------

    def settle(self) -> None:
        """Dispatch armed steps whose barrier opened; end the execution when nothing is left."""
        while not self.s.failures:
            steps = self.s.steps
            waiting = sorted(
                (n for n in self.s.armed if steps[n].status in (PENDING, SKIPPED)),
                key=lambda n: steps[n].order,
            )
            ready = [n for n in waiting if not self.blocked(n)]
            if not ready and waiting and not self.s.commands:
                ready = waiting[:1]  # nothing can open the barrier any more; run rather than hang
            if not ready:
                break
            for name in ready:
                self.enter_armed(name)
        if self.s.commands or self.s.terminal:
            return
        if any(self.s.steps[n].status in (PENDING, SKIPPED) for n in self.s.armed) and not self.s.failures:
            return
        if self.s.failures:
            self.emit(ev.PLAYBOOK_FAILED, error=self.s.failures[0], final_result=self.final_result())
        else:
            self.emit(ev.PLAYBOOK_COMPLETED, error=None, final_result=self.final_result())

    def enter_armed(self, name: str) -> None:
        step = self.pb.steps[name]
        if step.admit and not self.admitted(step):
            self.emit(ev.STEP_SKIPPED, name, reason="admission", source=None)
            self.follow_skipped(step)
            return
        self.enter(step)

    def final_result(self) -> Any:
        final = self.pb.executor.final_step
        if final and self.s.steps.get(final) and self.s.steps[final].status == COMPLETED:
            return self.s.results.get(final)
        end = self.s.steps.get("end")
        if "end" in self.pb.steps and end is not None and end.status == COMPLETED:
            return self.s.results.get("end")
        for name in reversed(self.s.executed):
            if self.s.steps[name].status == COMPLETED:
                return self.s.results.get(name)
        return None
