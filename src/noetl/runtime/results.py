"""Loop results kept in the event log instead of the state (DECISIONS 19): finding and hydrating them.

A loop with more items than ``Limits.inline_results`` keeps no per-iteration results in the folded
state: each iteration's result is already in the log (its ``call.done``), and ``loop.done`` carries
``{"results": {"$results": {execution_id, step, after, until, count}}, "stats": ...}``. So no process
that folds or decides - the server, a worker, ``noetl run`` - holds 100,000 results in memory.

The reference becomes the list again where a value leaves the engine for people or tools:

- a task that reads the loop step (its templates name it) gets the list in its render context:
  :func:`referenced_refs` picks the references a step needs, the driver loads them (the local
  runtime from its in-memory log, a worker from ``noetl.event``) and :func:`hydrate_wire` or
  :func:`hydrate_context` put them in;
- the outcome of ``noetl run`` (both runtimes), a sub-playbook's result and the API's execution
  result are hydrated the same way (:func:`hydrate`).

Routing conditions and ``set`` run inside the engine, which does no I/O: there a spilled loop's
``results`` raise a clear template error, and its ``stats`` work as usual.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from noetl.dsl import views
from noetl.dsl.model import Step
from noetl.engine import events as ev
from noetl.engine.context import RESULTS_REF, is_results_ref

Ref = dict[str, Any]
"""The inside of a ``{"$results": ...}`` reference: execution_id, step, after, until, count."""

Loaded = dict[tuple[str, str, int], list[Any]]
"""Hydrated results by (execution id, step, after)."""


def key(ref: Ref) -> tuple[str, str, int]:
    return (str(ref["execution_id"]), str(ref["step"]), int(ref["after"]))


def refs(value: object) -> list[Ref]:
    """Every results reference inside ``value`` (JSON-like data), depth first."""
    found: list[Ref] = []
    _collect(value, found)
    return found


def _collect(value: object, found: list[Ref]) -> None:
    if type(value) is dict:
        if is_results_ref(value):
            found.append(value[RESULTS_REF])
            return
        for item in value.values():
            _collect(item, found)
    elif type(value) is list:
        for item in value:
            _collect(item, found)


def hydrate(value: object, loaded: Loaded) -> Any:
    """``value`` with every reference found in ``loaded`` replaced by its list (a copy where changed)."""
    if type(value) is dict:
        if is_results_ref(value):
            return loaded.get(key(value[RESULTS_REF]), value)
        changed = {k: hydrate(v, loaded) for k, v in value.items()}
        return changed if any(changed[k] is not v for k, v in value.items()) else value
    if type(value) is list:
        items = [hydrate(v, loaded) for v in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    return value


def from_events(ref: Ref, events: Iterable[ev.Event]) -> list[Any]:
    """The results a reference stands for, from the execution's events (any order of reading)."""
    step, after, count = ref["step"], int(ref["after"]), int(ref["count"])
    until = int(ref.get("until") or 0)
    found: dict[int, Any] = {}
    for event in events:
        if event.step != step or event.id <= after or (until and event.id >= until):
            continue
        index = event.data.get("index")
        if not isinstance(index, int):
            continue
        if event.name == ev.CALL_DONE:
            found[index] = event.data.get("result")
        elif event.name == ev.CALL_ERROR:
            found[index] = None
    return [found.get(i) for i in range(count)]


def hydrate_from_events(value: object, events: list[ev.Event], execution_id: str) -> Any:
    """:func:`hydrate` with the references to this execution loaded from its ``events``."""
    wanted = [r for r in refs(value) if str(r["execution_id"]) == execution_id]
    if not wanted:
        return value
    return hydrate(value, {key(r): from_events(r, events) for r in wanted})


def referenced_refs(step: Step, steps: Mapping[str, object]) -> list[Ref]:
    """The references among ``steps`` (a wire context's step results) that ``step`` may read: those
    of steps whose name appears in the step's definition (a superset of what its templates read)."""
    candidates = [(name, refs(result)) for name, result in steps.items()]
    candidates = [(name, found) for name, found in candidates if found]
    if not candidates:
        return []
    text = repr(step)
    return [ref for name, found in candidates if name in text for ref in found]


def hydrate_wire(wire: dict[str, Any], loaded: Loaded) -> dict[str, Any]:
    """A command's wire context with the loaded references of its step results replaced."""
    steps = wire.get("steps")
    if not loaded or not isinstance(steps, dict):
        return wire
    return {**wire, "steps": {name: hydrate(result, loaded) for name, result in steps.items()}}


def hydrate_context(ctx: dict[str, Any], loaded: Loaded) -> dict[str, Any]:
    """An engine render context (result views) with the loaded references replaced."""
    steps = ctx.get("steps")
    if not loaded or not isinstance(steps, dict):
        return ctx
    out = dict(ctx)
    new_steps = dict(steps)
    for name, view in steps.items():
        plain = views.plain(view)
        hydrated = hydrate(plain, loaded)
        if hydrated is not plain:
            new_view = views.result_view(hydrated)
            new_steps[name] = new_view
            if out.get(name) is view:
                out[name] = new_view
    out["steps"] = new_steps
    return out


def step_refs(ctx: Mapping[str, Any]) -> dict[str, object]:
    """The plain step results of an engine render context (for :func:`referenced_refs`)."""
    steps = ctx.get("steps")
    if not isinstance(steps, Mapping):
        return {}
    return {name: views.plain(view) for name, view in steps.items()}


async def hydrate_stored(conn: Any, value: object) -> Any:
    """:func:`hydrate` with every reference loaded from ``noetl.event`` (any execution's)."""
    from noetl.store import events

    found = refs(value)
    if not found:
        return value
    loaded: Loaded = {}
    for ref in found:
        if key(ref) not in loaded:
            loaded[key(ref)] = await events.loop_results(conn, ref)
    return hydrate(value, loaded)
