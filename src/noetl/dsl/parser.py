"""Playbook YAML -> the immutable :class:`noetl.dsl.model.Playbook`, or a PlaybookError saying where.

Three passes over one document:

1. :mod:`noetl.dsl.yamlload` parses the text, keeping the line and column of every value;
2. :mod:`noetl.dsl.normalize` rewrites legacy syntax to the canonical format (warnings, or errors
   in strict mode);
3. the result is checked against :data:`noetl.dsl.schema.SHAPES` (keys, types, allowed values)
   and then built into the model, checking what a schema cannot: unique step and task names,
   arc targets, jump targets, workbook references, entry and final steps, durations.

Every problem is a :class:`noetl.errors.PlaybookError` carrying file, line, column, the step and the
field path, with a message that says what is wrong and what is allowed. The first problem found is
reported.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
from collections.abc import Collection, Iterator, Mapping
from typing import cast

from noetl.dsl import catalogpath, normalize, yamlload
from noetl.dsl.model import (
    JSON,
    TOOL_KINDS,
    AdmitRule,
    Arc,
    Backoff,
    Executor,
    FailureMode,
    Loop,
    LoopMode,
    Playbook,
    PolicyAction,
    RouteMode,
    Router,
    Rule,
    Step,
    Task,
)
from noetl.dsl.schema import SHAPES, TOOL_KIND, Field, JsonType
from noetl.errors import Location, PlaybookError, UsageError

_Map = dict[str, JSON]

UNDEFINED_MODES = ("strict", "lenient")
"""Values of ``executor.spec.undefined`` and of ``NOETL_TEMPLATE_UNDEFINED``."""

_TASK_KEYS = frozenset({"kind", "name", "input", "auth", "set", "spec", "output"})
"""Task keys that are not tool fields (``timeout``/``timeout_seconds`` are both)."""
_TASK_SPEC_KEYS = frozenset({"timeout", "policy", "accept_status"})
_TOOL_FIELD_HINTS = frozenset(
    {"code", "url", "command", "method", "query", "kind", "auth", "headers", "cmds"}
)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|m|min|h)?\s*$")
_UNIT_SECONDS = {None: 1.0, "ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a map",
    "array": "a list",
    "null": "null",
}


def parse(
    text: str, *, source: str | None = None, strict: bool = False, kinds: Collection[str] = TOOL_KINDS
) -> Playbook:
    """Parse and validate playbook YAML; ``source`` names the file in errors and warnings.

    ``kinds`` are the tool kinds a task may name (the runtime passes its tool registry; the parser
    itself knows only the built-in ones).
    """
    with _no_cycle_collection():
        document = yamlload.load(text, source)
        return _checked(document, source, strict, kinds)


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Pause Python's cycle collector while a playbook is built: the build allocates a few objects
    per YAML value and frees none, so each collection rescans all of them, which made loading
    superlinear (issue 17: 0.18 ms/step at 1,000 steps, 0.29 at 10,000). Reference counting still
    frees everything; the collector runs again afterwards."""
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def _checked(
    document: yamlload.Document, source: str | None, strict: bool, kinds: Collection[str]
) -> Playbook:
    try:
        return _parse_document(document, strict=strict, kinds=kinds)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        # A shape this parser failed to anticipate must still reach the user as a playbook error.
        message = (
            f"cannot read this playbook ({type(exc).__name__}: {exc}); please report this as a NoETL bug"
        )
        raise PlaybookError(message, location=Location(source)) from exc


def load(
    path: str | os.PathLike[str], *, strict: bool = False, kinds: Collection[str] = TOOL_KINDS
) -> Playbook:
    """Read and parse a playbook file; an unreadable file is a UsageError."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as file:
            text = file.read()
    except UnicodeDecodeError as exc:
        raise PlaybookError(
            f"playbook file is not UTF-8 text ({exc.reason})", location=Location(name)
        ) from None
    except IsADirectoryError:
        raise UsageError(f"'{name}' is a directory, not a playbook file (give its YAML files)") from None
    except OSError as exc:
        raise UsageError(f"cannot read playbook file '{name}': {exc.strerror or exc}") from None
    return parse(text, source=name, strict=strict, kinds=kinds)


def _parse_document(document: yamlload.Document, *, strict: bool, kinds: Collection[str]) -> Playbook:
    if document.root is None:
        raise PlaybookError("the playbook is empty", location=Location(document.file))
    if not isinstance(document.root, dict):
        found = _json_type_name(document.root)
        raise PlaybookError(
            f"a playbook must be a YAML map (apiVersion, kind, metadata, workflow, ...), got {found}",
            location=document.where(document.root),
        )
    rewriter = normalize.Rewriter(document, strict=strict)
    root = normalize.playbook(document.root, rewriter)
    assert isinstance(root, dict)
    _Checker(document, kinds).shape(root, "playbook", "", None)
    return _Builder(document, tuple(rewriter.warnings)).playbook(root)


# --------------------------------------------------------------------------- checking against SHAPES


class _Checker:
    """Checks canonical values against :data:`SHAPES`; raises on the first mismatch."""

    def __init__(self, document: yamlload.Document, kinds: Collection[str]) -> None:
        self.document = document
        self.kinds = kinds

    def error(
        self, message: str, container: object, key: str | int | None, path: str, step: str | None
    ) -> None:
        location = self.document.where(container, key)
        raise PlaybookError(message, location=location, step=step, field=path or None)

    def shape(self, value: _Map, name: str, path: str, step: str | None) -> None:
        shape = SHAPES[name]
        if name == "step" and isinstance(value.get("step"), str):
            step, path = str(value["step"]), ""
        if not shape.open:
            for key in value:
                if key not in shape.fields:
                    self.unknown_key(value, key, name, path, step)
        for key, f in shape.fields.items():
            if key in value:
                self.field(value, key, f, _join(path, key), step)
            elif f.required:
                where = f"'{path}'" if path else _SHAPE_PLACES.get(name, name)
                self.error(f"{where} needs '{key}'", value, None, _join(path, key), step)
        present = [key for key in shape.one_of if key in value]
        if shape.one_of and len(present) != 1:
            keys = " or ".join(f"'{k}'" for k in shape.one_of)
            self.error(f"'{path}' needs exactly one of {keys}", value, None, path, step)

    def unknown_key(self, value: _Map, key: str, name: str, path: str, step: str | None) -> None:
        allowed = ", ".join(sorted(SHAPES[name].fields))
        place = f"'{path}'" if path else _SHAPE_PLACES.get(name, name)
        hint = " (tool fields belong inside 'tool:')" if name == "step" and key in _TOOL_FIELD_HINTS else ""
        message = f"unknown key '{key}' in {place}{hint}; allowed keys: {allowed}"
        raise PlaybookError(
            message, location=self.document.where_key(value, key), step=step, field=_join(path, key)
        )

    def field(
        self, container: _Map | list[JSON], key: str | int, f: Field, path: str, step: str | None
    ) -> None:
        value = container[key]  # type: ignore[index]
        if f.types and not any(_is_type(value, t) for t in f.types):
            expected = " or ".join(_TYPE_NAMES[t] for t in f.types)
            self.error(
                f"'{path}' must be {expected}, got {_json_type_name(value)}", container, key, path, step
            )
        allowed = self.kinds if f.noun == TOOL_KIND else f.enum
        if isinstance(value, str) and allowed and value not in allowed:
            noun = f.noun or path
            self.error(f"unknown {noun} '{value}'; allowed: {', '.join(allowed)}", container, key, path, step)
        if f.minimum is not None and _is_type(value, "integer") and cast(int, value) < f.minimum:
            self.error(f"'{path}' must be at least {f.minimum}, got {value}", container, key, path, step)
        if isinstance(value, dict) and f.shape is not None:
            self.shape(value, f.shape, path, step)
        if isinstance(value, list):
            self.items(value, f, path, step)

    def items(self, value: list[JSON], f: Field, path: str, step: str | None) -> None:
        if f.min_items is not None and len(value) < f.min_items:
            self.error(f"'{path}' must not be empty", value, None, path, step)
        if f.items is None:
            return
        if f.items in SHAPES:
            for index, item in enumerate(value):
                item_path = f"{path}[{index}]"
                if not isinstance(item, dict):
                    found = _json_type_name(item)
                    self.error(f"'{item_path}' must be a map, got {found}", value, index, item_path, step)
                self.shape(cast(_Map, item), f.items, item_path, step)
            return
        item_type = cast(JsonType, f.items)
        for index, item in enumerate(value):
            if not _is_type(item, item_type):
                item_path = f"{path}[{index}]"
                message = f"'{item_path}' must be {_TYPE_NAMES[item_type]}, got {_json_type_name(item)}"
                self.error(message, value, index, item_path, step)


_SHAPE_PLACES = {"playbook": "the playbook's top level", "step": "the step", "metadata": "'metadata'"}


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _is_type(value: JSON, json_type: JsonType) -> bool:
    if json_type == "string":
        return isinstance(value, str)
    if json_type == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if json_type == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if json_type == "boolean":
        return isinstance(value, bool)
    if json_type == "object":
        return isinstance(value, dict)
    if json_type == "array":
        return isinstance(value, list)
    return value is None


def _json_type_name(value: object) -> str:
    order: tuple[JsonType, ...] = ("boolean", "integer", "number", "string", "object", "array", "null")
    for json_type in order:
        if _is_type(cast(JSON, value), json_type):
            return _TYPE_NAMES[json_type]
    return type(value).__name__


# --------------------------------------------------------------------------- building the model


class _Builder:
    """Builds the model from a checked canonical document; checks references between parts."""

    def __init__(self, document: yamlload.Document, warnings: tuple[str, ...]) -> None:
        self.document = document
        self.warnings = warnings
        self.workbook: dict[str, _Map] = {}

    def error(
        self, message: str, container: object, key: str | int | None = None, *, step: str | None, path: str
    ) -> PlaybookError:
        return PlaybookError(
            message, location=self.document.where(container, key), step=step, field=path or None
        )

    def playbook(self, root: _Map) -> Playbook:
        metadata = cast(_Map, root["metadata"])
        self.check_catalog_path(metadata)
        self.workbook = self.workbook_entries(cast(list[JSON], root.get("workbook", [])))
        raw_steps = cast(list[_Map], root["workflow"])
        names = self.step_names(raw_steps)
        steps = tuple(self.step(raw) for raw in raw_steps)
        for step in steps:
            self.check_arcs(step, names)
        return Playbook(
            name=cast(str, metadata["name"]),
            path=cast(str, metadata.get("path") or metadata["name"]),
            workflow=steps,
            api_version="noetl.io/v2",
            version=_text(metadata.get("version")),
            description=cast("str | None", metadata.get("description")),
            metadata=self.metadata(metadata),
            workload=dict(cast(_Map, root.get("workload", {}))),
            keychain=tuple(cast(list[_Map], root.get("keychain", []))),
            workbook={
                name: self.task(raw, name, None, f"workbook[{name}]", {}, (name,))
                for name, raw in self.workbook.items()
            },
            executor=self.executor(cast(_Map, root.get("executor", {})), names),
            source_file=self.document.file,
            warnings=self.warnings,
        )

    def check_catalog_path(self, metadata: _Map) -> None:
        """The catalog path (``metadata.path``, else ``name``) follows :mod:`noetl.dsl.catalogpath`:
        it addresses the catalog, never files, and has exactly one spelling."""
        key = "path" if metadata.get("path") else "name"
        path = str(metadata[key])
        wrong = catalogpath.problem(path)
        if wrong is not None:
            raise self.error(
                f"metadata.{key} {path!r} is not a valid catalog path: {wrong} ({catalogpath.RULE})",
                metadata,
                key,
                step=None,
                path=f"metadata.{key}",
            )

    def metadata(self, metadata: _Map) -> _Map:
        out = dict(metadata)
        if isinstance(out.get("tags"), str):
            out["tags"] = [out["tags"]]
        if isinstance(out.get("version"), (int, float)):
            out["version"] = _text(out["version"])
        return out

    def step_names(self, raw_steps: list[_Map]) -> dict[str, _Map]:
        names: dict[str, _Map] = {}
        for raw in raw_steps:
            name = cast(str, raw["step"])
            if not name.strip():
                raise self.error("a step name must not be empty", raw, "step", step=None, path="step")
            if name in names:
                first = self.document.where(names[name]).line
                message = (
                    f"duplicate step name '{name}' (first defined at line {first}); step names must be unique"
                )
                raise self.error(message, raw, "step", step=name, path="step")
            names[name] = raw
        return names

    def workbook_entries(self, entries: list[JSON]) -> dict[str, _Map]:
        out: dict[str, _Map] = {}
        for index, raw in enumerate(cast(list[_Map], entries)):
            name = cast(str, raw["name"])
            tool = cast(_Map, raw["tool"])
            path = f"workbook[{index}]"
            if name in out:
                raise self.error(
                    f"duplicate workbook task '{name}'", raw, "name", step=None, path=f"{path}.name"
                )
            if tool.get("kind") == "workbook":
                message = "a workbook task cannot itself be kind 'workbook'; give it the real tool kind"
                raise self.error(message, tool, "kind", step=None, path=f"{path}.tool.kind")
            out[name] = tool
        return out

    # ---- steps

    def step(self, raw: _Map) -> Step:
        name = cast(str, raw["step"])
        spec = cast(_Map, raw.get("spec", {}))
        policy = cast(_Map, spec.get("policy", {}))
        loop = cast("_Map | None", raw.get("loop"))
        tasks = self.tasks(raw, name)
        return Step(
            name=name,
            tool=tasks,
            pipeline=isinstance(raw["tool"], list),
            desc=cast("str | None", raw.get("desc")),
            loop=self.loop(loop, name) if loop is not None else None,
            admit=self.admit(cast("_Map | None", policy.get("admit")), name),
            set=dict(cast(_Map, raw.get("set", {}))),
            next=self.router(cast("_Map | None", raw.get("next"))),
            failure_mode=self.failure_mode(policy, loop, name),
            timeout=self.duration(spec, "timeout", step=name, path="spec.timeout"),
            priority=cast(int, spec.get("priority", 0)),
            location=self.document.where(raw),
            pool=cast("str | None", spec.get("pool")),
            resources=self.amounts(spec, "resources", name),
            concurrency_key=cast("str | None", spec.get("concurrency_key")),
            concurrency_limit=cast("int | None", spec.get("concurrency_limit")),
        )

    def amounts(self, spec: _Map, key: str, step: str) -> dict[str, int]:
        """``spec.resources``: each value a whole number of units, zero or more."""
        raw = cast(_Map, spec.get(key, {}))
        for name, value in raw.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                message = f"'spec.{key}.{name}' must be a whole number of units (0 or more), got {value!r}"
                raise self.error(message, raw, name, step=step, path=f"spec.{key}.{name}")
        return cast(dict[str, int], dict(raw))

    def failure_mode(self, policy: _Map, loop: _Map | None, name: str) -> FailureMode:
        step_mode = cast(_Map, policy.get("failure", {})).get("mode")
        loop_policy = cast(_Map, cast(_Map, (loop or {}).get("spec", {})).get("policy", {}))
        loop_mode = cast(_Map, loop_policy.get("failure", {})).get("mode")
        if step_mode and loop_mode and step_mode != loop_mode:
            message = (
                f"failure mode '{step_mode}' in spec.policy contradicts '{loop_mode}' in loop.spec.policy"
            )
            raise self.error(message, loop_policy, "failure", step=name, path="loop.spec.policy.failure.mode")
        return cast(FailureMode, loop_mode or step_mode or "fail_fast")

    def loop(self, raw: _Map, name: str) -> Loop:
        iterator = cast(str, raw["iterator"])
        if not _IDENTIFIER.match(iterator):
            message = f"'loop.iterator' must be a plain name (letters, digits, _), got '{iterator}'"
            raise self.error(message, raw, "iterator", step=name, path="loop.iterator")
        spec = cast(_Map, raw.get("spec", {}))
        return Loop(
            in_=raw["in"],
            iterator=iterator,
            mode=cast(LoopMode, spec.get("mode", "sequential")),
            max_in_flight=self.max_in_flight(spec, name),
        )

    def max_in_flight(self, spec: _Map, name: str) -> int | str | None:
        value = spec.get("max_in_flight")
        if not isinstance(value, str):
            return cast("int | None", value)
        if value.strip().isdigit() and int(value) >= 1:
            return int(value)
        if "{{" in value:
            return value
        message = f"'loop.spec.max_in_flight' must be a positive integer or a template, got '{value}'"
        raise self.error(message, spec, "max_in_flight", step=name, path="loop.spec.max_in_flight")

    def admit(self, raw: _Map | None, name: str) -> tuple[AdmitRule, ...]:
        if raw is None:
            return ()
        rules: list[AdmitRule] = []
        for index, rule in enumerate(cast(list[_Map], raw["rules"])):
            if "else" in rule:
                then = cast(_Map, cast(_Map, rule["else"])["then"])
                rules.append(AdmitRule(when=None, allow=cast(bool, then["allow"])))
                continue
            path = f"spec.policy.admit.rules[{index}]"
            when = self.condition(rule, name, path)
            rules.append(AdmitRule(when=when, allow=cast(bool, cast(_Map, rule["then"])["allow"])))
        return tuple(rules)

    def condition(self, rule: _Map, name: str | None, path: str) -> str:
        if "when" not in rule:
            message = f"'{path}' needs 'when' (or write the fallback as 'else: {{then: ...}}')"
            raise self.error(message, rule, step=name, path=f"{path}.when")
        return _condition(rule["when"])

    def router(self, raw: _Map | None) -> Router | None:
        if raw is None:
            return None
        spec = cast(_Map, raw.get("spec", {}))
        arcs = tuple(
            Arc(
                step=cast(str, arc["step"]),
                when=_condition(arc["when"]) if "when" in arc else None,
                set=dict(cast(_Map, arc.get("set", {}))),
                location=self.document.where(arc),
            )
            for arc in cast(list[_Map], raw["arcs"])
        )
        return Router(mode=cast(RouteMode, spec.get("mode", "exclusive")), arcs=arcs)

    def check_arcs(self, step: Step, names: Mapping[str, _Map]) -> None:
        if step.next is None:
            return
        for index, arc in enumerate(step.next.arcs):
            if arc.step in names or (arc.step == "end" and "end" not in names):
                continue
            existing = ", ".join(names)
            message = (
                f"arc target '{arc.step}' is not a step; existing steps: {existing} "
                "(or 'end' to finish the branch)"
            )
            raise PlaybookError(
                message, location=arc.location, step=step.name, field=f"next.arcs[{index}].step"
            )

    def executor(self, raw: _Map, names: Mapping[str, _Map]) -> Executor:
        spec = cast(_Map, raw.get("spec", {}))
        for key in ("entry_step", "final_step"):
            target = spec.get(key)
            if target is not None and target not in names:
                message = f"executor.spec.{key} '{target}' is not a step; existing steps: {', '.join(names)}"
                raise self.error(message, spec, key, step=None, path=f"executor.spec.{key}")
        return Executor(
            entry_step=cast("str | None", spec.get("entry_step")),
            final_step=cast("str | None", spec.get("final_step")),
            no_next_is_error=cast(bool, spec.get("no_next_is_error", False)),
            profile=cast(str, raw.get("profile", "auto")),
            priority=cast(int, spec.get("priority", 0)),
            max_concurrent_executions=cast("int | None", spec.get("max_concurrent_executions")),
            pools=self.kind_pools(spec),
            undefined=self.undefined_mode(spec),
        )

    def undefined_mode(self, spec: _Map) -> str | None:
        """``executor.spec.undefined``: how tasks render undefined values (DECISIONS 10)."""
        mode = spec.get("undefined")
        if mode is not None and mode not in UNDEFINED_MODES:
            message = f"executor.spec.undefined must be one of {', '.join(UNDEFINED_MODES)}, got {mode!r}"
            raise self.error(message, spec, "undefined", step=None, path="executor.spec.undefined")
        return mode if isinstance(mode, str) else None

    def kind_pools(self, spec: _Map) -> dict[str, str]:
        """``executor.spec.pools``: tool kind -> pool name, both strings."""
        raw = cast(_Map, spec.get("pools", {}))
        for kind, pool in raw.items():
            if not isinstance(pool, str) or not pool:
                message = f"'executor.spec.pools.{kind}' must be a pool name, got {pool!r}"
                raise self.error(message, raw, kind, step=None, path=f"executor.spec.pools.{kind}")
        return cast(dict[str, str], dict(raw))

    # ---- tasks

    def tasks(self, raw: _Map, name: str) -> tuple[Task, ...]:
        tool = raw["tool"]
        step_input = cast(_Map, raw.get("input", {}))
        if isinstance(tool, dict):
            label = cast(str, tool["name"]) if "name" in tool and tool.get("kind") != "workbook" else name
            resolved = self.resolve_workbook(tool, name, "tool", step_input)
            return (self.task(resolved, label, name, "tool", step_input, (label,)),)
        items = cast(list[_Map], tool)
        if not items:
            raise self.error("'tool' must not be an empty list", raw, "tool", step=name, path="tool")
        labels = self.labels(items, name)
        return tuple(
            self.task(
                self.resolve_workbook(item, name, f"tool[{i}]", step_input),
                labels[i],
                name,
                f"tool[{i}]",
                step_input,
                labels,
            )
            for i, item in enumerate(items)
        )

    def labels(self, items: list[_Map], name: str) -> tuple[str, ...]:
        labels: list[str] = []
        for index, item in enumerate(items):
            label = cast(str, item.get("name") or f"task_{index}")
            if label in labels:
                message = (
                    f"duplicate task name '{label}' in the pipeline; task names must be unique within a step"
                )
                raise self.error(message, item, "name", step=name, path=f"tool[{index}].name")
            labels.append(label)
        return tuple(labels)

    def resolve_workbook(self, task: _Map, step: str, path: str, step_input: _Map) -> _Map:
        """``{kind: workbook, name: X, input}`` -> workbook task X; its input defaults are overridden
        by the step's input, then by the task's (DECISIONS 21)."""
        if task.get("kind") != "workbook":
            return task
        ref = task.get("name")
        known = ", ".join(self.workbook) or "(the playbook has no workbook)"
        if ref is None:
            message = f"a 'kind: workbook' task needs 'name' (a workbook task); workbook tasks: {known}"
            raise self.error(message, task, "kind", step=step, path=f"{path}.name")
        if ref not in self.workbook:
            message = f"no workbook task named '{ref}'; workbook tasks: {known}"
            raise self.error(message, task, "name", step=step, path=f"{path}.name")
        base = self.workbook[ref]
        merged: _Map = {k: v for k, v in base.items() if k != "name"}
        merged.update({k: v for k, v in task.items() if k not in ("kind", "name", "input")})
        defaults = cast(_Map, base.get("input", {}))
        merged["input"] = {**defaults, **step_input, **cast(_Map, task.get("input", {}))}
        self.document.adopt(merged, task)
        return merged

    def task(
        self, raw: _Map, label: str, step: str | None, path: str, step_input: _Map, labels: tuple[str, ...]
    ) -> Task:
        spec = cast(_Map, raw.get("spec", {}))
        policy = cast(_Map, spec.get("policy", {}))
        rules = cast(list[_Map], policy.get("rules", []))
        return Task(
            kind=cast(str, raw["kind"]),
            name=label,
            config={k: v for k, v in raw.items() if k not in _TASK_KEYS},
            input={**step_input, **cast(_Map, raw.get("input", {}))},
            auth=raw.get("auth"),
            set=dict(cast(_Map, raw.get("set", {}))),
            rules=tuple(
                self.rule(r, i, step, f"{path}.spec.policy.rules[{i}]", label, labels)
                for i, r in enumerate(rules)
            ),
            timeout=self.task_timeout(raw, spec, step, path),
            accept_status=tuple(cast(list[int], spec.get("accept_status", []))),
            location=self.document.where(raw),
            field_locations={k: self.document.where_key(raw, k) for k in raw if k not in _TASK_KEYS},
            spec={k: v for k, v in spec.items() if k not in _TASK_SPEC_KEYS},
        )

    def task_timeout(self, raw: _Map, spec: _Map, step: str | None, path: str) -> float | None:
        timeout = spec.get("timeout")
        if isinstance(timeout, dict):
            return self.split_timeout(spec, step, f"{path}.spec.timeout")
        if timeout is not None:
            return self.duration(spec, "timeout", step=step, path=f"{path}.spec.timeout")
        for key in ("timeout", "timeout_seconds"):
            value = raw.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                return float(value)
        return None

    def split_timeout(self, spec: _Map, step: str | None, path: str) -> float | None:
        """``{connect: 5, read: 15}``: the read timeout bounds the call; else the largest part."""
        parts = cast(_Map, spec["timeout"])
        seconds = {key: self.duration(parts, key, step=step, path=f"{path}.{key}") for key in parts}
        if seconds.get("read") is not None:
            return seconds["read"]
        values = [s for s in seconds.values() if s is not None]
        return max(values) if values else None

    def rule(
        self, raw: _Map, index: int, step: str | None, path: str, label: str, labels: tuple[str, ...]
    ) -> Rule:
        if "else" in raw:
            when, then, then_path = None, cast(_Map, cast(_Map, raw["else"])["then"]), f"{path}.else.then"
        else:
            when, then, then_path = self.condition(raw, step, path), cast(_Map, raw["then"]), f"{path}.then"
        do = cast(PolicyAction, then.get("do", "continue"))
        return Rule(
            when=when,
            do=do,
            attempts=cast("int | None", then.get("attempts")),
            backoff=cast(Backoff, then.get("backoff", "none")),
            delay=self.duration(then, "delay", step=step, path=f"{then_path}.delay", zero_ok=True) or 0.0,
            max_delay=self.duration(
                then, "max_delay", step=step, path=f"{then_path}.max_delay", zero_ok=True
            ),
            to=self.jump_target(then, do, label, labels, step, then_path),
            set=dict(cast(_Map, then.get("set", {}))),
        )

    def jump_target(
        self, then: _Map, do: str, label: str, labels: tuple[str, ...], step: str | None, path: str
    ) -> str | None:
        target = cast("str | None", then.get("to"))
        if do != "jump":
            if target is not None:
                message = f"'to' is only used with 'do: jump' (this rule does '{do}')"
                raise self.error(message, then, "to", step=step, path=f"{path}.to")
            return None
        if target == "previous" and "previous" not in labels:
            position = labels.index(label)
            if position == 0:
                message = "'to: previous' in the first task has no previous task to jump to"
                raise self.error(message, then, "to", step=step, path=f"{path}.to")
            return labels[position - 1]
        if target not in labels:
            names = ", ".join(labels)
            wrong = (
                "'do: jump' needs 'to'"
                if target is None
                else f"jump target '{target}' is not a task of this step"
            )
            raise self.error(f"{wrong}; task names here: {names}", then, "to", step=step, path=f"{path}.to")
        return target

    def duration(
        self, container: _Map, key: str, *, step: str | None, path: str, zero_ok: bool = False
    ) -> float | None:
        """Seconds from a number or a string like '30s', '2m', '500ms', '1h'."""
        value = container.get(key)
        if value is None:
            return None
        seconds: float | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str) and (match := _DURATION.match(value)):
            seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        if seconds is None or seconds < 0 or (seconds == 0 and not zero_ok):
            bound = "zero or more" if zero_ok else "positive"
            message = f"'{path}' must be a {bound} number of seconds or a duration like '30s', '2m', '500ms'"
            raise self.error(f"{message}; got {value!r}", container, key, step=step, path=path)
        return seconds


def _condition(value: JSON) -> str:
    """Arc and rule conditions are templates; a YAML boolean becomes its template-truthy text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return cast(str, value)


def _text(value: JSON) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)
