"""Legacy playbook syntax -> the canonical format, one reported rewrite at a time (REFERENCE Appendix A).

The normaliser walks the raw YAML values before they are checked against
:data:`noetl.dsl.schema.SHAPES`. It recognises the older generations (G0 typed steps, G1
``tool: python`` strings and ``args``, G2 ``case`` routing and ``eval`` rules, the list forms of
``next``) and rewrites each into canonical maps. Every rewrite is reported through a
:class:`Rewriter`: as a warning such as ``line 12, step 'fetch': 'args' is legacy; rewritten to
'input'``, or, in strict mode, as a :class:`PlaybookError`.

Values it does not recognise are left alone for the schema check to reject with a precise
message; so every function here tolerates any input type. Legacy forms that have no clean
canonical equivalent (``save``/``sink`` blocks, ``then.retry`` pagination, iterator filters) are
errors that say what to write instead. New containers take over the source positions of the ones
they replace, so later errors still point at the right line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping

from noetl.dsl import renames as renames_
from noetl.dsl import sinks
from noetl.dsl.model import JSON, TOOL_KINDS
from noetl.dsl.schema import LEGACY_API_VERSIONS, SHAPES
from noetl.dsl.yamlload import Document
from noetl.errors import PlaybookError

_Map = dict[str, JSON]

_STEP_KEYS = frozenset(SHAPES["step"].fields)
_LEGACY_STEP_KEYS = frozenset({"type", "when", "case", "vars", "retry", "save", "sink"})
_STAYS_ON_STEP = (_STEP_KEYS | _LEGACY_STEP_KEYS) - {"tool", "input"}
"""Keys of a G0/G1 step that stay on the step when its tool fields move into ``tool``."""
_G0_INPUT_KEYS = ("with", "data", "args")
_ARC_PAYLOAD_KEYS = ("args", "data", "input", "with")
_ITERATOR_KEYS = {"collection": "in", "element": "iterator"}
_ITERATOR_FILTERS = ("where", "limit", "chunk", "order_by", "enumerate")
_SUCCESS_EVENTS = frozenset({"step.exit", "call.done", "step.done", "loop.done", "done"})
_ERROR_EVENTS = frozenset({"call.error", "step.failed", "step.error", "error"})
_DEFAULT_RETRY_WHEN = "{{ output.status == 'error' }}"


class Rewriter:
    """Collects a warning for each legacy rewrite, or raises on the first one in strict mode."""

    def __init__(self, document: Document, *, strict: bool) -> None:
        self.document = document
        self.strict = strict
        self.warnings: list[str] = []
        self.names: frozenset[str] = frozenset()
        """Step and variable names: a legacy template name such as ``result`` that is one of them
        means that step or variable, so it is not renamed."""

    def legacy(
        self, what: str, instead: str, container: object, key: str | int | None = None, step: object = None
    ) -> None:
        """Report that ``what`` was rewritten to ``instead`` (strict mode: reject it)."""
        location = self.document.where(container, key)
        step_name = step if isinstance(step, str) else None
        if self.strict:
            message = f"{what} is legacy syntax; write {instead} instead (strict mode rejects legacy syntax)"
            raise PlaybookError(message, location=location, step=step_name, field=_field(key))
        where = f"line {location.line}" if location.line is not None else "playbook"
        if step_name is not None:
            where += f", step '{step_name}'"
        self.warnings.append(f"{where}: {what} is legacy; rewritten to {instead}")

    def error(
        self, message: str, container: object, key: str | int | None = None, step: object = None
    ) -> PlaybookError:
        """An error for legacy syntax that cannot be rewritten."""
        step_name = step if isinstance(step, str) else None
        location = self.document.where(container, key)
        return PlaybookError(message, location=location, step=step_name, field=_field(key))

    def copy(self, raw: _Map) -> _Map:
        new = dict(raw)
        self.document.adopt(new, raw)
        return new

    def move(self, target: _Map, key: str, source: _Map, old_key: str) -> None:
        """``target[key] = source.pop(old_key)``, keeping the value's position."""
        target[key] = source.pop(old_key)
        self.document.place(target, key, source, old_key)


def _field(key: str | int | None) -> str | None:
    return key if isinstance(key, str) else None


def _map_at(container: JSON, key: str) -> _Map | None:
    """``container[key]`` when both are maps, else None."""
    value = container.get(key) if isinstance(container, dict) else None
    return value if isinstance(value, dict) else None


# --------------------------------------------------------------------------- root


def playbook(root: JSON, rw: Rewriter) -> JSON:
    """Rewrite a whole playbook document into the canonical format."""
    if not isinstance(root, dict):
        return root
    doc = rw.copy(root)
    _api_version(doc, rw)
    _kind(doc, rw)
    _catalog_path(doc, rw)
    _root_vars(doc, rw)
    doc_workflow = doc.get("workflow")
    rw.names = _names(doc, doc_workflow)
    if isinstance(doc_workflow, list):
        rewritten: list[JSON] = []
        for raw in doc_workflow:
            rewritten.extend(sinks.split(step(raw, rw), rw))
        rw.document.adopt(rewritten, doc_workflow)
        doc["workflow"] = rewritten
    workbook = doc.get("workbook")
    if isinstance(workbook, list):
        doc["workbook"] = _each(workbook, lambda raw, i: _workbook_entry(raw, rw), rw)
    keychain = doc.get("keychain")
    if isinstance(keychain, list):
        doc["keychain"] = _each(keychain, lambda raw, i: _keychain_entry(raw, rw), rw)
    return doc


def _names(doc: _Map, workflow: JSON) -> frozenset[str]:
    steps = workflow if isinstance(workflow, list) else []
    names = {s["step"] for s in steps if isinstance(s, dict) and isinstance(s.get("step"), str)}
    workload = doc.get("workload")
    if isinstance(workload, dict):
        names.update(workload)
    names.update(_written(steps))
    return frozenset(str(n) for n in names)


def _written(value: JSON) -> set[str]:
    """Variable names that ``set``/``vars`` maps anywhere in ``value`` write (prefix stripped)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("set", "set_ctx", "set_iter", "vars") and isinstance(item, dict):
                found.update(str(k).split(".", 1)[-1] for k in item)
            found |= _written(item)
    elif isinstance(value, list):
        for item in value:
            found |= _written(item)
    return found


def _each(items: list[JSON], rewrite: Callable[[JSON, int], JSON], rw: Rewriter) -> list[JSON]:
    new = [rewrite(item, index) for index, item in enumerate(items)]
    rw.document.adopt(new, items)
    return new


def _api_version(doc: _Map, rw: Rewriter) -> None:
    version = doc.get("apiVersion")
    if version in LEGACY_API_VERSIONS:
        rw.legacy(f"apiVersion '{version}'", "'noetl.io/v2'", doc, "apiVersion")
        doc["apiVersion"] = "noetl.io/v2"


def _catalog_path(doc: _Map, rw: Rewriter) -> None:
    """Upstream accepted ``metadata.path: /team/etl``; catalog paths are relative names here."""
    metadata = doc.get("metadata")
    if not isinstance(metadata, dict):
        return
    key = "path" if metadata.get("path") else "name"
    value = metadata.get(key)
    if isinstance(value, str) and value.startswith("/") and value.lstrip("/"):
        relative = value.lstrip("/")
        rw.legacy(f"metadata.{key} '{value}' (a leading '/')", f"'{relative}'", metadata, key)
        new = rw.copy(metadata)
        new[key] = relative
        doc["metadata"] = new


def _kind(doc: _Map, rw: Rewriter) -> None:
    kind = doc.get("kind")
    if isinstance(kind, str) and kind != "Playbook" and kind.lower() == "playbook":
        rw.legacy(f"kind '{kind}'", "'Playbook'", doc, "kind")
        doc["kind"] = "Playbook"


def _root_vars(doc: _Map, rw: Rewriter) -> None:
    if "vars" not in doc:
        return
    variables = doc["vars"]
    workload = doc.get("workload", {})
    if not isinstance(variables, dict) or not isinstance(workload, dict):
        raise rw.error("root 'vars' must be a map (it is merged into 'workload')", doc, "vars")
    rw.legacy("root 'vars'", "'workload' (merged)", doc, "vars")
    merged = {**variables, **workload}
    rw.document.adopt(merged, workload if "workload" in doc else variables)
    doc["workload"] = merged
    del doc["vars"]


def _workbook_entry(raw: JSON, rw: Rewriter) -> JSON:
    if not isinstance(raw, dict):
        return raw
    entry = rw.copy(raw)
    if "type" in entry and "tool" not in entry:
        task = {"kind": entry.pop("type")}
        rw.document.adopt(task, raw)
        for key in [k for k in entry if k not in ("name", "desc", "assert")]:
            rw.move(task, key, entry, key)
        rw.legacy(
            "workbook 'type: ...' with tool fields on the entry", "'tool: {kind: ..., ...}'", raw, "type"
        )
        _g0_inputs(task, None, rw)
        entry["tool"] = task
    if "tool" in entry:
        entry["tool"] = _tool_map(entry["tool"], None, rw)
    return entry


def _keychain_entry(raw: JSON, rw: Rewriter) -> JSON:
    if not isinstance(raw, dict) or raw.get("scope") not in ("execution", "catalog"):
        return raw
    entry = rw.copy(raw)
    new_scope = "local" if raw["scope"] == "execution" else "global"
    rw.legacy(f"keychain scope '{raw['scope']}'", f"'{new_scope}'", raw, "scope")
    entry["scope"] = new_scope
    return entry


# --------------------------------------------------------------------------- steps


def step(raw: JSON, rw: Rewriter) -> JSON:
    """Rewrite one step (and its tool, loop and routing) into the canonical format."""
    if not isinstance(raw, dict):
        return raw
    s = rw.copy(raw)
    name = s.get("step")
    if "type" in s:
        _typed_step(s, name, rw)
    elif isinstance(s.get("tool"), str):
        _string_tool(s, name, rw)
    _step_inputs(s, name, rw)
    if "tool" in s:
        s["tool"] = tool(s["tool"], name, rw)
    else:
        rw.legacy("a step without 'tool'", "'tool: {kind: noop}'", s, None, name)
        s["tool"] = {"kind": "noop"}
    if "loop" in s:
        s["loop"] = loop(s["loop"], name, rw)
    _step_guard(s, name, rw)
    _step_vars(s, name, rw)
    _step_retry(s, name, rw)
    _step_spec_next_mode(s, name, rw)
    if "next" in s:
        s["next"] = router(s["next"], name, rw, s)
    if "case" in s:
        _case(s, name, rw)
    _step_output(s, name, rw)
    _routing_names(s, name, rw)
    return s


def _routing_names(s: _Map, name: JSON, rw: Rewriter) -> None:
    """Legacy result names in step ``set`` and in the arcs' ``when``/``set``."""
    if "set" in s:
        s["set"] = legacy_names(s["set"], "step 'set'", s, "set", name, rw)
    router_map = _map_at(s, "next")
    arcs = router_map.get("arcs") if router_map is not None else None
    if not isinstance(arcs, list):
        return
    for index, arc in enumerate(arcs):
        if not isinstance(arc, dict):
            continue
        for key in ("when", "set"):
            if key in arc:
                renamed = legacy_names(arc[key], f"arc '{key}'", arc, key, name, rw)
                if renamed is not arc[key]:
                    new_arc = rw.copy(arc)
                    new_arc[key] = renamed
                    arcs[index] = arc = new_arc


def _step_output(s: _Map, name: JSON, rw: Rewriter) -> None:
    """Step-level ``output`` (result handling) -> the ``output`` of the step's (last) task."""
    if "output" not in s:
        return
    task = s.get("tool")
    last = task[-1] if isinstance(task, list) and task else task
    if not isinstance(last, dict) or "output" in last:
        return  # left for the schema check, which names the key
    rw.legacy("step-level 'output'", "the task's 'output'", s, "output", name)
    rw.move(last, "output", s, "output")


def _typed_step(s: _Map, name: JSON, rw: Rewriter) -> None:
    """G0: ``type: X`` plus tool fields on the step -> ``tool: {kind: X, ...}``."""
    kind = s["type"]
    if "tool" in s:
        raise rw.error("a step has both 'type' (legacy) and 'tool'; keep only 'tool'", s, "type", name)
    if kind == "iterator":
        _iterator_step(s, name, rw)
        return
    rw.legacy(
        f"'type: {kind}' with tool fields on the step", f"'tool: {{kind: {kind}, ...}}'", s, "type", name
    )
    s.pop("type")
    task: _Map = {"kind": kind}
    rw.document.adopt(task, s)
    for key in [k for k in s if k not in _STAYS_ON_STEP]:
        rw.move(task, key, s, key)
    _g0_inputs(task, name, rw)
    s["tool"] = task


def _iterator_step(s: _Map, name: JSON, rw: Rewriter) -> None:
    """G0 ``type: iterator`` -> step ``loop`` plus ``tool`` from ``task``."""
    for key in _ITERATOR_FILTERS:
        if key in s:
            message = (
                f"iterator '{key}' is not supported; filter or slice the collection in 'loop.in' "
                '(e.g. in: "{{ items | selectattr(...) | list }}")'
            )
            raise rw.error(message, s, key, name)
    if "loop" in s:
        raise rw.error("a step has both 'type: iterator' and 'loop'; keep only 'loop'", s, "type", name)
    rw.legacy("'type: iterator'", "'loop: {in, iterator, spec}' with 'tool'", s, "type", name)
    s.pop("type")
    new_loop: _Map = {}
    rw.document.adopt(new_loop, s)
    spec: _Map = {}
    if "collection" in s:
        rw.move(new_loop, "in", s, "collection")
    if "element" in s:
        rw.move(new_loop, "iterator", s, "element")
    if "mode" in s:
        mode = s.pop("mode")
        spec["mode"] = "parallel" if mode == "async" else mode
    if "concurrency" in s:
        spec["max_in_flight"] = s.pop("concurrency")
    if spec:
        new_loop["spec"] = spec
    s["loop"] = new_loop
    if "task" in s:
        s["tool"] = s.pop("task")


def _string_tool(s: _Map, name: JSON, rw: Rewriter) -> None:
    """G1: ``tool: python`` plus sibling fields -> ``tool: {kind: python, ...}``."""
    kind = s["tool"]
    rw.legacy(f"'tool: {kind}' (a string)", f"'tool: {{kind: {kind}, ...}}'", s, "tool", name)
    task: _Map = {"kind": kind}
    rw.document.adopt(task, s)
    for key in [k for k in s if k not in _STAYS_ON_STEP and k != "tool"]:
        rw.move(task, key, s, key)
    s["tool"] = task


def _step_inputs(s: _Map, name: JSON, rw: Rewriter) -> None:
    for key in _G0_INPUT_KEYS:
        if key in s:
            _merge_into_input(s, key, name, rw)


def _merge_into_input(m: _Map, key: str, name: JSON, rw: Rewriter) -> None:
    """``args``/``data``/``with`` -> ``input`` (values already in ``input`` win)."""
    value = m[key]
    current = m.get("input", {})
    if not isinstance(value, dict) or not isinstance(current, dict):
        raise rw.error(f"'{key}' must be a map of input bindings (it becomes 'input')", m, key, name)
    rw.legacy(f"'{key}'", "'input'", m, key, name)
    merged = {**value, **current}
    rw.document.adopt(merged, current if "input" in m else value)
    m["input"] = merged
    del m[key]


def _step_guard(s: _Map, name: JSON, rw: Rewriter) -> None:
    """Step ``when: c`` -> admission rules allowing the step when c is true."""
    if "when" not in s:
        return
    spec = _map_at(s, "spec") if "spec" in s else {}
    policy = _map_at(spec, "policy") if spec is not None and "policy" in spec else {}
    if spec is None or policy is None:
        raise rw.error("'spec' and 'spec.policy' must be maps", s, "spec", name)
    if "admit" in policy:
        raise rw.error(
            "a step has both 'when' (legacy) and 'spec.policy.admit'; keep only admit", s, "when", name
        )
    rw.legacy("step 'when'", "'spec.policy.admit.rules'", s, "when", name)
    rules: list[JSON] = [
        {"when": s.pop("when"), "then": {"allow": True}},
        {"else": {"then": {"allow": False}}},
    ]
    new_policy: _Map = {**policy, "admit": {"rules": rules}}
    new_spec: _Map = {**spec, "policy": new_policy}
    rw.document.adopt(new_spec, spec if "spec" in s else s)
    s["spec"] = new_spec


def _step_vars(s: _Map, name: JSON, rw: Rewriter) -> None:
    """G2 step ``vars: {k: expr}`` -> step ``set: {ctx.k: expr}`` (``result`` -> ``output.data``)."""
    if "vars" not in s:
        return
    variables = s["vars"]
    current = s.get("set", {})
    if not isinstance(variables, dict) or not isinstance(current, dict):
        raise rw.error("step 'vars' must be a map (it becomes step 'set')", s, "vars", name)
    rw.legacy("step 'vars'", "step 'set' with 'ctx.' keys", s, "vars", name)
    converted = {_scoped(k): _rename_json(v, {"result": "output.data"}) for k, v in variables.items()}
    merged = {**converted, **current}
    rw.document.adopt(merged, variables)
    s["set"] = merged
    del s["vars"]


def _scoped(key: str) -> str:
    return key if "." in key else f"ctx.{key}"


def _step_retry(s: _Map, name: JSON, rw: Rewriter) -> None:
    """G0 step ``retry:`` block -> the task's ``spec.policy.rules``."""
    if "retry" not in s:
        return
    block = s["retry"]
    task = s.get("tool")
    if not isinstance(task, dict):
        raise rw.error(
            "a step 'retry' block needs a single task; put 'spec.policy.rules' on each task", s, "retry", name
        )
    spec = _map_at(task, "spec") if "spec" in task else {}
    policy = _map_at(spec, "policy") or {}
    if spec is None or "rules" in policy:
        raise rw.error(
            "a step has both 'retry' (legacy) and task 'spec.policy'; keep only the policy", s, "retry", name
        )
    rules = _retry_rules(block, s, name, rw)
    rw.legacy("step 'retry' block", "task 'spec.policy.rules' with 'do: retry'", s, "retry", name)
    new_policy: _Map = {**policy, "rules": rules}
    new_task: _Map = {**task, "spec": {**spec, "policy": new_policy}}
    rw.document.adopt(new_task, task)
    s["tool"] = new_task
    del s["retry"]


_RETRY_KEYS = frozenset(
    {
        "max_attempts", "initial_delay", "backoff_multiplier", "max_delay", "jitter", "retry_when",
        "stop_when", "retry_on_status", "retry_on", "backoff_seconds", "backoff",
    }
)  # fmt: skip


def _retry_rules(block: JSON, s: _Map, name: JSON, rw: Rewriter) -> list[JSON]:
    if isinstance(block, int) and not isinstance(block, bool):
        block = {"max_attempts": block}
    if not isinstance(block, dict):
        raise rw.error("'retry' must be a map like {max_attempts: 3, initial_delay: 1}", s, "retry", name)
    unknown = sorted(set(block) - _RETRY_KEYS)
    if unknown:
        allowed = ", ".join(sorted(_RETRY_KEYS))
        raise rw.error(
            f"unknown key '{unknown[0]}' in 'retry'; allowed keys: {allowed}", block, unknown[0], name
        )
    then: _Map = {"do": "retry"}
    if "max_attempts" in block:
        then["attempts"] = block["max_attempts"]
    if "initial_delay" in block:
        then["delay"] = block["initial_delay"]
        then["backoff"] = "exponential" if block.get("backoff_multiplier", 2) != 1 else "fixed"
    elif "backoff_seconds" in block:
        then["delay"] = block["backoff_seconds"]
        then["backoff"] = "fixed"
    backoff = block.get("backoff")
    if isinstance(backoff, int | float) and not isinstance(backoff, bool) and "delay" not in then:
        then.update(delay=backoff, backoff="fixed")  # upstream's `backoff: 5` means 5 s between runs
    elif isinstance(backoff, str):
        then["backoff"] = backoff
    if "max_delay" in block:
        then["max_delay"] = block["max_delay"]
    rules: list[JSON] = []
    if "stop_when" in block:
        rules.append({"when": block["stop_when"], "then": {"do": "fail"}})
    rules.append({"when": block.get("retry_when", _retry_condition(block)), "then": then})
    return rules


def _retry_condition(block: _Map) -> str:
    """``retry_on_status`` (HTTP codes) and ``retry_on`` (error kinds) narrow the default (any error)."""
    alternatives: list[str] = []
    for key, field in (("retry_on_status", "output.http.status"), ("retry_on", "output.error.kind")):
        values = block.get(key)
        if isinstance(values, list) and values:
            alternatives.append(f"{field} in {json.dumps(values)}")
    if not alternatives:
        return _DEFAULT_RETRY_WHEN
    return "{{ output.status == 'error' and (" + " or ".join(alternatives) + ") }}"


def _step_spec_next_mode(s: _Map, name: JSON, rw: Rewriter) -> None:
    spec = s.get("spec")
    if not isinstance(spec, dict) or "next_mode" not in spec:
        return
    rw.legacy("'spec.next_mode'", "'next.spec.mode'", spec, "next_mode", name)
    new_spec = rw.copy(spec)
    mode = new_spec.pop("next_mode")
    s["spec"] = new_spec
    routed = router(s.get("next"), name, rw, s)
    if not isinstance(routed, dict):
        return
    routed = rw.copy(routed)
    routed["spec"] = {**(_map_at(routed, "spec") or {}), "mode": mode}
    s["next"] = routed


# --------------------------------------------------------------------------- tools


def tool(raw: JSON, name: JSON, rw: Rewriter) -> JSON:
    """A step's ``tool``: one task map, or a pipeline list."""
    if isinstance(raw, dict):
        return _tool_map(raw, name, rw)
    if isinstance(raw, list):
        return _each(raw, lambda item, i: _pipeline_item(item, name, rw), rw)
    return raw


def _pipeline_item(raw: JSON, name: JSON, rw: Rewriter) -> JSON:
    """``- label: {kind: ...}`` -> ``- {name: label, kind: ...}``."""
    if isinstance(raw, dict) and len(raw) == 1 and "kind" not in raw and "type" not in raw:
        ((label, inner),) = raw.items()
        if isinstance(inner, dict):
            if "name" in inner:
                message = (
                    f"pipeline item '{label}' has both a label key and 'name'; write {{name: ..., kind: ...}}"
                )
                raise rw.error(message, raw, label, name)
            rw.legacy(
                f"pipeline item '{label}: {{kind: ...}}'", f"'{{name: {label}, kind: ...}}'", raw, label, name
            )
            task = {"name": label, **inner}
            rw.document.adopt(task, inner)
            raw = task
    return _tool_map(raw, name, rw)


def _tool_map(raw: JSON, name: JSON, rw: Rewriter) -> JSON:
    if not isinstance(raw, dict):
        return raw
    task = rw.copy(raw)
    if "type" in task and "kind" not in task:
        rw.legacy("task 'type'", "'kind'", task, "type", name)
        rw.move(task, "kind", task, "type")
        _g0_inputs(task, name, rw)
    _spec_fields(task, name, rw)
    if "args" in task and (isinstance(task["args"], dict) or task.get("kind") in TOOL_KINDS):
        _merge_into_input(task, "args", name, rw)
    if "retry" in task:
        _task_retry(task, name, rw)
    if "credential" in task and task.get("kind") in ("python", "http", "postgres", "duckdb", "shell"):
        if "auth" in task:
            raise rw.error(
                "a task has both 'auth' and 'credential'; keep only 'auth'", task, "credential", name
            )
        rw.move(task, "auth", task, "credential")
    if task.get("kind") == "http" and "endpoint" in task and "url" not in task:
        rw.legacy("http 'endpoint'", "'url'", task, "endpoint", name)
        rw.move(task, "url", task, "endpoint")
    if "eval" in task:
        _eval_rules(task, name, rw)
    _task_spec(task, name, rw)
    return task


_SPEC_TOOL_FIELDS = frozenset(
    {
        "code", "url", "endpoint", "method", "params", "headers", "json", "body", "data", "payload", "form",
        "command", "query", "commands", "queries", "cmd", "cmds", "input", "args", "path", "libs", "env",
        "return_step", "catalog_id", "auth",
    }
)  # fmt: skip
"""Tool fields that some upstream fixtures wrote under the task's ``spec`` (REFERENCE §14.14)."""


def _spec_fields(task: _Map, name: JSON, rw: Rewriter) -> None:
    """Tool fields written under ``tool.spec`` (``spec: {code, method, url}``) -> on the task."""
    spec = _map_at(task, "spec")
    if spec is None:
        return
    misplaced = [key for key in spec if key in _SPEC_TOOL_FIELDS and key not in task]
    if not misplaced:
        return
    new_spec = rw.copy(spec)
    for key in misplaced:
        rw.legacy(f"tool field '{key}' under 'spec'", f"'{key}' on the task", spec, key, name)
        rw.move(task, key, new_spec, key)
    if new_spec:
        task["spec"] = new_spec
    else:
        del task["spec"]


def _task_retry(task: _Map, name: JSON, rw: Rewriter) -> None:
    """A task-level ``retry:`` block (G0 keys, or upstream's ``retry_on_status``/``retry_on``/
    ``backoff_seconds``) -> the task's ``spec.policy.rules``."""
    block = task["retry"]
    spec = _map_at(task, "spec") if "spec" in task else {}
    policy = (_map_at(spec, "policy") if spec is not None else None) or {}
    if spec is None or "rules" in policy:
        raise rw.error(
            "a task has both 'retry' (legacy) and 'spec.policy'; keep only the policy", task, "retry", name
        )
    rules = _retry_rules(block, task, name, rw)
    rw.legacy("task 'retry' block", "task 'spec.policy.rules' with 'do: retry'", task, "retry", name)
    new_spec: _Map = {**spec, "policy": {**policy, "rules": rules}}
    rw.document.adopt(new_spec, spec if "spec" in task else task)
    task["spec"] = new_spec
    del task["retry"]


def _g0_inputs(task: _Map, name: JSON, rw: Rewriter) -> None:
    """G0 inputs: ``with``/``args`` (and ``data`` except for http, where it is the body) -> ``input``."""
    for key in _G0_INPUT_KEYS:
        if key in task and not (key == "data" and task.get("kind") == "http"):
            _merge_into_input(task, key, name, rw)


def _task_spec(task: _Map, name: JSON, rw: Rewriter) -> None:
    spec = _map_at(task, "spec")
    policy = _map_at(spec, "policy")
    rules = policy.get("rules") if policy is not None else None
    if spec is None or policy is None or not isinstance(rules, list):
        return
    new_policy = rw.copy(policy)
    new_policy["rules"] = _each(rules, lambda rule, i: _rule(rule, name, rw), rw)
    new_spec = rw.copy(spec)
    new_spec["policy"] = new_policy
    task["spec"] = new_spec


def _rule(raw: JSON, name: JSON, rw: Rewriter) -> JSON:
    """``else: {do: ...}`` without ``then`` (DECISIONS 12); ``set_ctx``/``set_iter`` -> ``set``."""
    if not isinstance(raw, dict):
        return raw
    rule = rw.copy(raw)
    if "else" in rule and rule["else"] is None and isinstance(rule.get("then"), dict):
        # `- else:` with `then:` one level too shallow: YAML reads {else: null, then: {...}}.
        rw.legacy("'else:' with 'then:' beside it", "'else: {then: {...}}'", rule, "else", name)
        wrapped_then: _Map = {"then": rule.pop("then")}
        rw.document.adopt_at(wrapped_then, raw, "then")
        rule["else"] = wrapped_then
    if "when" in rule:
        rule["when"] = legacy_names(rule["when"], "a policy 'when'", rule, "when", name, rw)
    fallback = rule.get("else")
    if isinstance(fallback, dict) and "then" not in fallback:
        rw.legacy("'else: {do: ...}' without 'then'", "'else: {then: {do: ...}}'", rule, "else", name)
        wrapped: _Map = {"then": fallback}
        rw.document.adopt(wrapped, fallback)
        rule["else"] = wrapped
    holder = rule["else"] if isinstance(rule.get("else"), dict) else rule
    then = holder.get("then") if isinstance(holder, dict) else None
    if isinstance(holder, dict) and isinstance(then, dict):
        then = _then_scoped_sets(then, name, rw)
        if "set" in then:
            renamed = legacy_names(then["set"], "a policy 'set'", then, "set", name, rw)
            if renamed is not then["set"]:
                then = rw.copy(then)
                then["set"] = renamed
        holder["then"] = then
    return rule


def _then_scoped_sets(then: _Map, name: JSON, rw: Rewriter) -> _Map:
    if "set_ctx" not in then and "set_iter" not in then:
        return then
    new = rw.copy(then)
    merged: _Map = dict(_map_at(new, "set") or {})
    for key, prefix in (("set_ctx", "ctx."), ("set_iter", "iter.")):
        if key not in new:
            continue
        values = new.pop(key)
        if not isinstance(values, dict):
            raise rw.error(f"'{key}' must be a map", then, key, name)
        rw.legacy(f"'then.{key}'", f"'then.set' with '{prefix}' keys", then, key, name)
        merged.update({k if k.startswith(prefix) else prefix + k: v for k, v in values.items()})
    new["set"] = merged
    return new


_EVAL_KEYS = {"expr": "when", "set_vars": "set", "target": "to"}


def _eval_rules(task: _Map, name: JSON, rw: Rewriter) -> None:
    """G2 ``tool.eval: [{expr, do, ...}, {else: {do}}]`` -> ``spec.policy.rules``."""
    entries = task["eval"]
    spec = task.get("spec", {})
    if not isinstance(entries, list) or not isinstance(spec, dict) or "policy" in spec:
        raise rw.error(
            "'eval' must be a list of rules, and not combined with 'spec.policy'", task, "eval", name
        )
    rw.legacy("'eval'", "'spec.policy.rules'", task, "eval", name)
    rules: list[JSON] = []
    for entry in entries:
        fallback = _map_at(entry, "else")
        if fallback is not None:
            rules.append({"else": _eval_then(fallback)})
        elif isinstance(entry, dict):
            then = _eval_then({k: v for k, v in entry.items() if k != "expr"})
            rules.append({"when": entry.get("expr"), **then})
        else:
            rules.append(entry)
    task["spec"] = {**spec, "policy": {"rules": rules}}
    del task["eval"]


def _eval_then(entry: _Map) -> _Map:
    if "then" in entry:
        return entry
    return {"then": {_EVAL_KEYS.get(k, k): v for k, v in entry.items()}}


# --------------------------------------------------------------------------- loops


def loop(raw: JSON, name: JSON, rw: Rewriter) -> JSON:
    """Reject cursor loops; move G2 ``loop.mode`` (and friends) under ``loop.spec``."""
    if not isinstance(raw, dict):
        return raw
    if "cursor" in raw or (_map_at(raw, "spec") or {}).get("mode") == "cursor":
        key = "cursor" if "cursor" in raw else "spec"
        raise rw.error("cursor loops are not supported yet; loop over a list with 'loop.in'", raw, key, name)
    new = rw.copy(raw)
    for old, canonical in _ITERATOR_KEYS.items():
        if old in new and canonical not in new:
            rw.legacy(f"'loop.{old}'", f"'loop.{canonical}'", raw, old, name)
            rw.move(new, canonical, new, old)
    moved = {key: target for key, target in _LOOP_SPEC_MOVES.items() if key in new}
    if moved:
        spec = new.get("spec", {})
        if not isinstance(spec, dict):
            return new
        new_spec = dict(spec)
        rw.document.adopt(new_spec, spec if "spec" in new else raw)
        for key, target in moved.items():
            rw.legacy(f"'loop.{key}'", f"'loop.spec.{target}'", raw, key, name)
            rw.move(new_spec, target, new, key)
        new["spec"] = new_spec
    spec = new.get("spec")
    if isinstance(spec, dict) and spec.get("mode") == "async":
        rw.legacy("loop mode 'async'", "'parallel'", spec, "mode", name)
        new["spec"] = {**spec, "mode": "parallel"}
        rw.document.adopt(new["spec"], spec)
    return new


_LOOP_SPEC_MOVES = {"mode": "mode", "max_in_flight": "max_in_flight", "concurrency": "max_in_flight"}


# --------------------------------------------------------------------------- routing


def router(raw: JSON, name: JSON, rw: Rewriter, holder: object = None) -> JSON:
    """``next`` in any generation -> ``{spec: {mode}, arcs: [...]}``; ``holder`` is the step map."""
    if isinstance(raw, str):
        rw.legacy(f"'next: {raw}'", f"'next: {{arcs: [{{step: {raw}}}]}}'", holder, "next", name)
        return _router("exclusive", [_target_arc(raw, holder, "next", rw)], holder, rw)
    if isinstance(raw, dict):
        if "step" in raw and "arcs" not in raw:
            rw.legacy("'next' as a single arc map", "'next: {arcs: [...]}'", holder, "next", name)
            return _router("exclusive", [_arc(raw, name, rw)], holder, rw)
        arcs = raw.get("arcs")
        if isinstance(arcs, list):
            new = rw.copy(raw)
            new["arcs"] = _each(arcs, lambda arc, i: _arc(arc, name, rw), rw)
            return new
        return raw
    if isinstance(raw, list):
        return _list_router(raw, name, rw, holder)
    return raw


def _router(mode: str, arcs: list[JSON], holder: object, rw: Rewriter) -> _Map:
    new: _Map = {"spec": {"mode": mode}, "arcs": arcs}
    rw.document.adopt_at(new, holder, "next")
    return new


def _target_arc(target: str, container: object, key: str | int | None, rw: Rewriter) -> _Map:
    """An arc ``{step: target}`` written as a bare string at ``container[key]``."""
    arc: _Map = {"step": target}
    rw.document.adopt_at(arc, container, key)
    return arc


def _list_router(items: list[JSON], name: JSON, rw: Rewriter, holder: object) -> JSON:
    if any(isinstance(item, dict) and ("then" in item or "else" in item) for item in items):
        return _g0_router(items, name, rw, holder)
    rw.legacy("'next' as a list", "'next: {spec: {mode}, arcs: [...]}'", holder, "next", name)
    arcs = [
        _target_arc(item, items, i, rw) if isinstance(item, str) else _arc(item, name, rw)
        for i, item in enumerate(items)
    ]
    rw.document.adopt(arcs, items)
    conditional = any(isinstance(arc, dict) and "when" in arc for arc in arcs)
    return _router("inclusive" if len(arcs) > 1 and not conditional else "exclusive", arcs, holder, rw)


def _arc(raw: JSON, name: JSON, rw: Rewriter) -> JSON:
    """Arc payload ``args``/``data``/``input``/``with`` -> arc ``set`` with bare keys."""
    if not isinstance(raw, dict):
        return raw
    payload_keys = [key for key in _ARC_PAYLOAD_KEYS if key in raw]
    if not payload_keys:
        return raw
    arc = rw.copy(raw)
    merged: _Map = {}
    for key in payload_keys:
        value = arc.pop(key)
        if not isinstance(value, dict):
            raise rw.error(f"arc '{key}' must be a map (it becomes arc 'set')", raw, key, name)
        rw.legacy(f"arc '{key}'", "arc 'set'", raw, key, name)
        merged.update(value)
    current = arc.get("set", {})
    arc["set"] = {**merged, **current} if isinstance(current, dict) else current
    return arc


def _extended(arc: JSON, rw: Rewriter, **extra: JSON) -> JSON:
    """A copy of an arc map with more keys (positions kept)."""
    if not isinstance(arc, dict):
        return arc
    new = rw.copy(arc)
    new.update(extra)
    return new


_Group = tuple[JSON, list[JSON], object]
"""One legacy routing branch: (condition or None, arcs it fires, where it was written)."""


def _g0_router(items: list[JSON], name: JSON, rw: Rewriter, holder: object) -> JSON:
    """G0 ``[{when: c, then: [{step: a}]}, {else: [{step: b}]}]`` -> arcs (``result`` -> this step)."""
    rw.legacy(
        "'next' with 'when'/'then'/'else' entries", "'next: {arcs: [{step, when}]}'", holder, "next", name
    )
    rename: dict[str, JSON] = {"result": name} if isinstance(name, str) else {}
    groups: list[_Group] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise rw.error(
                "each G0 'next' entry must be a map with 'when'/'then' or 'else'", items, index, name
            )
        if "else" in item:
            groups.append((None, _targets(item["else"], item, "else", name, rw), item))
        elif "then" in item:
            condition = _rename_json(item.get("when"), rename)
            groups.append((condition, _targets(item["then"], item, "then", name, rw), item))
        else:
            groups.append((None, [_arc(item, name, rw)], item))
    return _groups_router(groups, name, rw, holder)


def _targets(raw: JSON, holder: _Map, key: str, name: JSON, rw: Rewriter) -> list[JSON]:
    items = raw if isinstance(raw, list) else [raw]
    arcs: list[JSON] = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            arcs.append(
                _target_arc(item, raw, index, rw) if raw is items else _target_arc(item, holder, key, rw)
            )
        elif isinstance(item, dict) and "step" in item:
            arcs.append(_arc(item, name, rw))
        else:
            raise rw.error(f"'{key}' must list target steps like [{{step: name}}]", holder, key, name)
    return arcs


def _groups_router(groups: list[_Group], name: JSON, rw: Rewriter, holder: object) -> _Map:
    """First matching branch fires all its arcs. One arc per branch is plain exclusive routing;
    otherwise every arc gets its branch's condition and the negation of the earlier ones."""
    if all(len(arcs) <= 1 for _, arcs, _ in groups):
        arcs_out = [_with_when(arc, cond, rw) for cond, arcs, _ in groups for arc in arcs]
        return _router("exclusive", arcs_out, holder, rw)
    arcs_out = []
    earlier: list[str] = []
    for cond, arcs, where in groups:
        expr = _expression(cond)
        if cond is not None and expr is None:
            message = (
                "cannot rewrite this legacy routing: a branch with several targets needs each condition "
                "to be one '{{ expression }}'; write next: {spec: {mode: inclusive}, arcs: [...]} instead"
            )
            raise rw.error(message, where, None, name)
        parts = [f"not ({e})" for e in earlier] + ([f"({expr})"] if expr is not None else [])
        when = "{{ " + " and ".join(parts) + " }}" if parts else None
        arcs_out.extend(_with_when(arc, when, rw) for arc in arcs)
        if expr is not None:
            earlier.append(expr)
    return _router("inclusive", arcs_out, holder, rw)


def _with_when(arc: JSON, when: JSON, rw: Rewriter) -> JSON:
    return arc if when is None else _extended(arc, rw, when=when)


_SINGLE_EXPR = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.S)
_EVENT_CLAUSE = re.compile(r"^\s*event\.name\s*==\s*(['\"])([\w.]+)\1\s*(?:and\s+(.+?))?\s*$", re.S)


def _expression(cond: JSON) -> str | None:
    """The expression inside a one-expression template (``"{{ x > 1 }}"`` -> ``"x > 1"``)."""
    if isinstance(cond, bool):
        return "true" if cond else "false"
    if not isinstance(cond, str):
        return None
    match = _SINGLE_EXPR.match(cond)
    if match is None or "{{" in match.group(1) or "}}" in match.group(1):
        return None
    return match.group(1).strip()


def _case(s: _Map, name: JSON, rw: Rewriter) -> None:
    """G2 ``case: [{when: "{{ event.name == 'step.exit' and C }}", then: {next, set}}]`` -> arcs."""
    entries = s["case"]
    if not isinstance(entries, list):
        raise rw.error("'case' must be a list of {when, then} entries", s, "case", name)
    rw.legacy("'case' routing", "'next: {arcs: [{step, when, set}]}'", s, "case", name)
    del s["case"]
    groups = [_case_group(entry, name, rw) for entry in entries]
    fallback = _map_at(s, "next")
    fallback_arcs = fallback.get("arcs") if fallback is not None else None
    if isinstance(fallback_arcs, list):
        groups.extend((None, [arc], fallback) for arc in fallback_arcs)
    s["next"] = _groups_router(groups, name, rw, s)


def _case_group(entry: JSON, name: JSON, rw: Rewriter) -> _Group:
    then = _map_at(entry, "then")
    if not isinstance(entry, dict) or then is None:
        raise rw.error("each 'case' entry must be {when: ..., then: {next: [...]}}", entry, None, name)
    unsupported = sorted(set(then) - {"next", "set"})
    if unsupported:
        message = (
            f"'case' action '{unsupported[0]}' cannot be rewritten automatically "
            "(unsupported legacy syntax); "
            "use task 'spec.policy.rules' (retry/jump for pagination) and 'next.arcs' instead"
        )
        raise rw.error(message, then, unsupported[0], name)
    if "next" not in then:
        raise rw.error("a 'case' entry without 'next' cannot be rewritten; use step 'set'", entry, None, name)
    condition = _case_condition(entry.get("when"), entry, name, rw)
    updates = _case_sets(then.get("set"), then, name, rw)
    arcs = _targets(then["next"], then, "next", name, rw)
    if updates:
        arcs = [_extended(arc, rw, set={**updates, **(_map_at(arc, "set") or {})}) for arc in arcs]
    return (condition, arcs, entry)


def _case_condition(when: JSON, entry: _Map, name: JSON, rw: Rewriter) -> JSON:
    """Strip a success ``event.name`` clause; keep error clauses (error routing)."""
    renames = {"response": "output.data", "result": "output.data"}
    expr = _expression(when)
    if expr is None:
        return _rename_json(when, renames)
    match = _EVENT_CLAUSE.match(expr)
    if match is None:
        return _rename_json(when, renames)
    event, rest = match.group(2), match.group(3)
    rest = _rename_text(rest, renames) if rest else None
    if event in _SUCCESS_EVENTS:
        return "{{ " + rest + " }}" if rest else None
    if event in _ERROR_EVENTS:
        clause = "event.name == 'call.error'"
        return "{{ " + clause + (f" and ({rest})" if rest else "") + " }}"
    raise rw.error(
        f"'case' on event '{event}' cannot be rewritten; route with 'next.arcs'", entry, "when", name
    )


def _case_sets(raw: JSON, then: _Map, name: JSON, rw: Rewriter) -> _Map:
    """``then.set`` as ``[{name, value}]`` or a map -> arc ``set`` values."""
    renames = {"response": "output.data", "result": "output.data"}
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return {k: _rename_json(v, renames) for k, v in raw.items()}
    if isinstance(raw, list) and all(isinstance(i, dict) and isinstance(i.get("name"), str) for i in raw):
        return {str(i["name"]): _rename_json(i.get("value"), renames) for i in raw if isinstance(i, dict)}
    raise rw.error("'case' 'set' must be a map or a list of {name, value}", then, "set", name)


# --------------------------------------------------------------------------- template renames


def _rename_text(text: str, renames: Mapping[str, JSON]) -> str:
    return renames_.text(text, renames)


def _rename_json(value: JSON, renames: Mapping[str, JSON]) -> JSON:
    """Rename legacy variables (``result``, ``response``) inside the ``{{ }}`` parts of strings."""
    return renames_.template(value, renames)


def legacy_names(
    value: JSON, what: str, container: object, key: str | int | None, name: JSON, rw: Rewriter
) -> JSON:
    """Routing-time legacy names in ``value`` (``result``, ``this``, ``response``, ``outcome``) ->
    ``output.data``/``output``, one warning per value; names taken by a step or variable stay."""
    table = renames_.without(renames_.ROUTING, rw.names)
    found = renames_.used(value, table)
    if not found:
        return value
    listed = ", ".join(f"'{old}'" for old in found)
    targets = ", ".join(f"'{table[old]}'" for old in found)
    rw.legacy(f"{listed} in {what}", targets, container, key, name)
    return renames_.deep(value, table)
