"""Render contexts: what a template can see (REFERENCE §4.15).

``base`` is the execution-wide part: variables as bare keys and under ``workload``/``ctx``/``vars``,
each finished step's result under its name (with the ``data``/``result`` aliases of DECISIONS 7),
``execution_id``, ``job`` and ``path``. ``iteration`` adds a loop iteration's names; ``routing``
adds ``output`` and ``event`` for step ``set`` and arc conditions.

Contexts are snapshots: a command's context never changes after it was built.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from noetl.dsl import templates, views
from noetl.engine.state import State

SUCCESS_NAMES = frozenset({"call.done", "step.done", "step.exit"})
FAILURE_NAMES = frozenset({"call.error", "step.failed"})


class EventName(str):
    """An event name that compares equal to its aliases (DECISIONS 16).

    ``call.done`` also equals ``step.done`` and ``step.exit``; ``call.error`` equals
    ``step.failed``; ``loop.done`` equals only itself.
    """

    __slots__ = ()

    def _group(self) -> frozenset[str]:
        s = str(self)
        if s in SUCCESS_NAMES:
            return SUCCESS_NAMES
        if s in FAILURE_NAMES:
            return FAILURE_NAMES
        return frozenset({s})

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return str(other) in self._group()
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    __hash__ = str.__hash__


def base(state: State, reads: Collection[str] | None = None) -> dict[str, Any]:
    """Variables, step results and ids of the execution, as a fresh dict; with ``reads``, only the
    results of those steps (what one step's templates can name: :meth:`Graph.reads`), so that the
    cost of a context, and of a command carrying it, does not grow with the steps already run."""
    variables = dict(state.variables)
    ctx: dict[str, Any] = dict(variables)
    ctx["workload"] = variables
    ctx["ctx"] = variables
    ctx["vars"] = variables
    results = state.results
    if reads is None:
        views = {name: templates.result_view(result) for name, result in results.items()}
    else:
        views = {name: templates.result_view(results[name]) for name in reads if name in results}
    ctx.update(views)
    ctx["steps"] = views
    ctx["execution_id"] = state.execution_id
    ctx["job"] = {"uuid": state.execution_id, "id": state.execution_id, "execution_id": state.execution_id}
    ctx["path"] = state.playbook_path
    return ctx


def iteration(base_ctx: dict[str, Any], iterator: str, item: Any, index: int, total: int) -> dict[str, Any]:
    """``base_ctx`` plus the names of one loop iteration (REFERENCE §4.10)."""
    ctx = dict(base_ctx)
    first, last = index == 0, index == total - 1
    ctx["iter"] = {
        iterator: item,
        "_index": index,
        "_total": total,
        "_first": first,
        "_last": last,
        "index": index,
    }
    ctx[iterator] = item
    ctx["_index"] = index
    ctx["_total"] = total
    ctx["loop"] = {"index": index, "first": first, "last": last, "length": total}
    return ctx


def envelope(ok: bool, data: Any, error: dict[str, Any] | None) -> dict[str, Any]:
    """The ``output`` envelope of DECISIONS 14 for a finished step."""
    out: dict[str, Any] = {
        "status": "error" if (error is not None or not ok) else "ok",
        "data": data,
        "error": error,
        "meta": {},
    }
    if error:
        for key in ("http", "pg", "py", "shell"):
            if key in error:
                out[key] = error[key]
    return out


def routing(
    base_ctx: dict[str, Any], step: str, event_name: str, output: dict[str, Any], now: float
) -> dict[str, Any]:
    """``base_ctx`` plus ``output``/``outcome``/``error`` and ``event`` for ``set`` and arcs."""
    ctx = dict(base_ctx)
    ctx["output"] = output
    ctx["outcome"] = {**output, "result": output.get("data")}
    ctx["error"] = output.get("error")
    ctx["event"] = {"name": EventName(event_name), "step": step, "payload": {}, "timestamp": now}
    return ctx


RESULTS_REF = "$results"
"""The key of a reference to a loop's per-iteration results kept in the event log (DECISIONS 19)."""


def results_ref(execution_id: str, step: str, after: int, until: int, count: int) -> dict[str, Any]:
    """``{"$results": {...}}``: the results of ``count`` iterations of ``step`` are the ``call.done``
    results (None for failed iterations) of that execution's events between ids ``after`` and
    ``until`` (the loop's ``step.enter`` and ``loop.done``)."""
    ref = {"execution_id": execution_id, "step": step, "after": after, "until": until, "count": count}
    return {RESULTS_REF: ref}


def is_results_ref(value: object) -> bool:
    return type(value) is dict and len(value) == 1 and RESULTS_REF in value


def to_wire(ctx: dict[str, Any]) -> dict[str, Any]:
    """A command context in its compact JSON form: each value once (see :func:`from_wire`).

    Step results live under ``steps`` and variables under ``workload``; the bare-name copies and
    the ``ctx``/``vars`` aliases are dropped and rebuilt on the other side.
    """
    steps = ctx.get("steps") or {}
    variables = ctx.get("workload") or {}
    drop = set(steps) | {"ctx", "vars"}
    drop.update(k for k in variables if k not in steps and ctx.get(k) is variables.get(k))
    wire = {k: v for k, v in ctx.items() if k not in drop}
    wire["steps"] = {name: views.plain(view) for name, view in steps.items()}
    return wire


def from_wire(wire: dict[str, Any]) -> dict[str, Any]:
    """The render context a command carried as JSON, with result views and aliases restored."""
    variables = dict(wire.get("workload") or {})
    views = {name: templates.result_view(result) for name, result in (wire.get("steps") or {}).items()}
    ctx: dict[str, Any] = dict(variables)
    ctx.update(wire)
    ctx["workload"] = variables
    ctx["ctx"] = variables
    ctx["vars"] = variables
    ctx["steps"] = views
    ctx.update(views)
    for key in ("iter", "loop", "_index", "_total"):
        if key in wire:
            ctx[key] = wire[key]
    iterator = (wire.get("iter") or {}).keys() - {"_index", "_total", "_first", "_last", "index"}
    for name in iterator:
        ctx[name] = wire["iter"][name]
    return ctx
