"""The canonical playbook format as data: allowed keys, types and values of every object kind.

:data:`SHAPES` is the one description of the format. The parser checks every (normalised)
playbook against it, and :func:`json_schema` turns it into a JSON Schema (draft 2020-12) for
editors and CI, so the two cannot drift apart.

A :class:`Shape` is one kind of YAML map (the root, a step, a loop, a task, an arc ...); each of
its :class:`Field` s lists the JSON types it accepts, and optionally the shape of a nested map, the
item type of a list, allowed values, a minimum, and whether it is required. ``open`` shapes accept
other keys too: ``metadata`` is free-form, and a task's other keys are the tool's own fields
(``url``, ``code``, ``command`` ...), which the tool checks when the playbook is loaded.

Legacy syntax (REFERENCE Appendix A) is not described here: :mod:`noetl.dsl.normalize` rewrites it
into this format first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from noetl.dsl.model import JSON, TOOL_KINDS

JsonType = Literal["string", "integer", "number", "boolean", "object", "array", "null"]

API_VERSIONS: tuple[str, ...] = ("noetl.io/v2", "noetl.io/v10")
"""Canonical apiVersion and its alias (DECISIONS 1)."""
LEGACY_API_VERSIONS: tuple[str, ...] = ("noetl.io/v1",)
ACTIONS: tuple[str, ...] = ("continue", "retry", "jump", "break", "fail")
BACKOFFS: tuple[str, ...] = ("none", "fixed", "linear", "exponential")
LOOP_MODES: tuple[str, ...] = ("sequential", "parallel")
ROUTE_MODES: tuple[str, ...] = ("exclusive", "inclusive")
FAILURE_MODES: tuple[str, ...] = ("fail_fast", "best_effort")
PROFILES: tuple[str, ...] = ("local", "distributed", "auto")

TOOL_KIND = "tool kind"
"""The noun of a task's ``kind`` field: the parser checks it against the kinds it is given."""

ANY: tuple[JsonType, ...] = ()
"""Field types meaning "any JSON value"."""


@dataclass(frozen=True, slots=True)
class Field:
    """One key of a shape. ``shape`` checks a map value, ``items`` the elements of a list value
    (a shape name, or a JSON type name)."""

    types: tuple[JsonType, ...]
    doc: str = ""
    required: bool = False
    shape: str | None = None
    items: str | None = None
    enum: tuple[str, ...] = ()
    noun: str | None = None
    minimum: int | None = None
    min_items: int | None = None


@dataclass(frozen=True, slots=True)
class Shape:
    """One kind of map. ``one_of`` lists keys of which exactly one must be present."""

    doc: str
    fields: Mapping[str, Field]
    open: bool = False
    one_of: tuple[str, ...] = ()


_STR: tuple[JsonType, ...] = ("string",)
_MAP: tuple[JsonType, ...] = ("object",)
_LIST: tuple[JsonType, ...] = ("array",)
_BOOL: tuple[JsonType, ...] = ("boolean",)
_CONDITION = Field(("string", "boolean"), "template rendered to a truth value")
_DURATION: tuple[JsonType, ...] = ("number", "string")
_MUTATIONS = Field(_MAP, "variables to write: {ctx.x | iter.x | x: template}")

SHAPES: Mapping[str, Shape] = {
    "playbook": Shape(
        "A NoETL playbook.",
        {
            "apiVersion": Field(_STR, "format version", required=True, enum=API_VERSIONS, noun="apiVersion"),
            "kind": Field(_STR, "resource kind", required=True, enum=("Playbook",), noun="kind"),
            "metadata": Field(_MAP, "name, path, version, ...", required=True, shape="metadata"),
            "workload": Field(_MAP, "default variables, replaced key by key by the execute payload"),
            "keychain": Field(_LIST, "credential and token declarations", items="keychain_entry"),
            "executor": Field(_MAP, "runtime requirements and entry/final steps", shape="executor"),
            "workbook": Field(_LIST, "reusable named tasks", items="workbook_entry"),
            "workflow": Field(_LIST, "the steps", required=True, items="step", min_items=1),
        },
    ),
    "metadata": Shape(
        "Free-form metadata; these keys are understood.",
        {
            "name": Field(_STR, "playbook name", required=True),
            "path": Field(_STR, "catalog path (defaults to name)"),
            "version": Field(("string", "number"), "informational version"),
            "description": Field(_STR),
            "labels": Field(_MAP),
            "tags": Field(("array", "string"), items="string"),
            "exposed_in_ui": Field(_BOOL),
            "exposes_as_mcp": Field(_BOOL),
            "agent": Field(_BOOL),
            "capabilities": Field(_LIST),
        },
        open=True,
    ),
    "keychain_entry": Shape(
        "A credential or token declaration.",
        {
            "name": Field(_STR, "name used as {{ keychain.<name> }}", required=True),
            "kind": Field(_STR),
            "scope": Field(_STR, enum=("local", "global", "shared"), noun="keychain scope"),
        },
        open=True,
    ),
    "executor": Shape(
        "Runtime requirements.",
        {
            "profile": Field(_STR, enum=PROFILES, noun="executor profile"),
            "version": Field(_STR),
            "requires": Field(_MAP, shape="requires"),
            "spec": Field(_MAP, shape="executor_spec"),
        },
    ),
    "requires": Shape(
        "What the playbook needs from the runtime.",
        {
            "tools": Field(_LIST, items="string"),
            "features": Field(_LIST, items="string"),
        },
    ),
    "executor_spec": Shape(
        "Entry and final steps, priority, limits and pools.",
        {
            "entry_step": Field(_STR, "step to start at (default: 'start', else the first step)"),
            "final_step": Field(_STR, "step whose result is the execution's final result"),
            "no_next_is_error": Field(_BOOL, "a completed step whose arcs all fail to match fails"),
            "priority": Field(("integer",), "added to every step's priority (higher runs first)"),
            "max_concurrent_executions": Field(
                ("integer",), "executions of this playbook running at once", minimum=1
            ),
            "pools": Field(_MAP, "tool kind -> worker pool, for steps without spec.pool"),
            "undefined": Field(
                _STR,
                "strict: rendering an undefined value fails the task; lenient (upstream's): it renders "
                "empty and a template.warning names it",
                enum=("strict", "lenient"),
            ),
            "policy": Field(_MAP),
        },
    ),
    "workbook_entry": Shape(
        "A reusable task, run by {kind: workbook, name: <name>}.",
        {
            "name": Field(_STR, required=True),
            "tool": Field(_MAP, "the task", required=True, shape="task"),
            "desc": Field(_STR),
            "assert": Field(_MAP, "ignored"),
        },
    ),
    "step": Shape(
        "One step of the workflow.",
        {
            "step": Field(_STR, "unique step name", required=True),
            "desc": Field(_STR),
            "spec": Field(_MAP, shape="step_spec"),
            "loop": Field(_MAP, "run the tool once per element", shape="loop"),
            "tool": Field(
                ("object", "array"), "one task, or a pipeline", required=True, shape="task", items="task"
            ),
            "set": _MUTATIONS,
            "next": Field(_MAP, "routing", shape="next"),
            "input": Field(_MAP, "merged into each task's input (task values win)"),
        },
    ),
    "step_spec": Shape(
        "Step settings.",
        {
            "timeout": Field(_DURATION, "e.g. 30, '30s', '2m'"),
            "priority": Field(("integer",), "higher runs first (added to executor.spec.priority)"),
            "pool": Field(_STR, "worker pool that runs the step"),
            "resources": Field(_MAP, "units held while running: {gpu: 1, memory_mb: 2048, pg_pool: 1}"),
            "concurrency_key": Field(_STR, "template, e.g. '{{ tenant }}': keys share workers fairly"),
            "concurrency_limit": Field(("integer",), "commands in flight per concurrency key", minimum=1),
            "policy": Field(_MAP, shape="step_policy"),
        },
    ),
    "step_policy": Shape(
        "Step policies.",
        {
            "admit": Field(_MAP, "whether the step runs or is skipped", shape="admit"),
            "failure": Field(_MAP, shape="failure"),
            "lifecycle": Field(_MAP),
            "emit": Field(_MAP),
        },
    ),
    "admit": Shape(
        "Admission rules, first match wins.",
        {"mode": Field(_STR), "rules": Field(_LIST, required=True, items="admit_rule")},
    ),
    "admit_rule": Shape(
        "{when, then: {allow}} or {else: {then: {allow}}}.",
        {
            "when": _CONDITION,
            "then": Field(_MAP, shape="admit_then"),
            "else": Field(_MAP, shape="admit_else"),
        },
        one_of=("then", "else"),
    ),
    "admit_then": Shape("Admission outcome.", {"allow": Field(_BOOL, required=True)}),
    "admit_else": Shape("Admission fallback.", {"then": Field(_MAP, required=True, shape="admit_then")}),
    "failure": Shape(
        "What a failure does.",
        {"mode": Field(_STR, enum=FAILURE_MODES, noun="failure mode")},
    ),
    "loop": Shape(
        "Loop over a list.",
        {
            "in": Field(ANY, "list (or template rendering to one)", required=True),
            "iterator": Field(_STR, "name bound to each element", required=True),
            "spec": Field(_MAP, shape="loop_spec"),
        },
    ),
    "loop_spec": Shape(
        "Loop settings.",
        {
            "mode": Field(_STR, enum=LOOP_MODES, noun="loop mode"),
            "max_in_flight": Field(("integer", "string"), "positive integer or template", minimum=1),
            "policy": Field(_MAP, shape="loop_policy"),
        },
    ),
    "loop_policy": Shape(
        "Loop policies.",
        {
            "exec": Field(_STR, enum=("local", "distributed"), noun="loop exec placement"),
            "failure": Field(_MAP, shape="failure"),
        },
    ),
    "task": Shape(
        "One task; other keys are the tool's own fields (url, code, command, ...).",
        {
            "kind": Field(_STR, "tool kind", required=True, enum=TOOL_KINDS, noun=TOOL_KIND),
            "name": Field(_STR, "label in a pipeline; for kind workbook, the workbook task"),
            "input": Field(_MAP, "bindings rendered before the tool runs"),
            "auth": Field(("string", "object"), "credential reference"),
            "set": _MUTATIONS,
            "spec": Field(_MAP, shape="task_spec"),
            "output": Field(_MAP, "result handling (accepted, not used yet)"),
            "timeout": Field(("number", "string", "object", "null")),
            "timeout_seconds": Field(("number", "string", "null")),
        },
        open=True,
    ),
    "task_spec": Shape(
        "Task settings; other keys are kept.",
        {
            "timeout": Field(("number", "string", "object"), "seconds, '30s', or {connect, read}"),
            "policy": Field(_MAP, shape="task_policy"),
            "accept_status": Field(_LIST, "HTTP statuses that are not errors", items="integer"),
        },
        open=True,
    ),
    "task_policy": Shape(
        "Task control rules, first match wins.",
        {
            "rules": Field(_LIST, items="policy_rule"),
            "mode": Field(_STR),
            "on_unmatched": Field(_STR, enum=("continue", "fail"), noun="on_unmatched value"),
        },
    ),
    "policy_rule": Shape(
        "{when, then} or {else: {then}}.",
        {"when": _CONDITION, "then": Field(_MAP, shape="rule_then"), "else": Field(_MAP, shape="rule_else")},
        one_of=("then", "else"),
    ),
    "rule_then": Shape(
        "What a matching rule does.",
        {
            "do": Field(_STR, enum=ACTIONS, noun="policy action"),
            "attempts": Field(("integer",), "total runs including the first", minimum=1),
            "backoff": Field(_STR, enum=BACKOFFS, noun="backoff"),
            "delay": Field(_DURATION, "seconds before a retry"),
            "max_delay": Field(_DURATION),
            "to": Field(_STR, "task label to jump to"),
            "set": _MUTATIONS,
        },
    ),
    "rule_else": Shape("Fallback rule.", {"then": Field(_MAP, required=True, shape="rule_then")}),
    "next": Shape(
        "Router: arcs to the next steps.",
        {"spec": Field(_MAP, shape="next_spec"), "arcs": Field(_LIST, required=True, items="arc")},
    ),
    "next_spec": Shape(
        "Routing settings.",
        {
            "mode": Field(_STR, enum=ROUTE_MODES, noun="next mode"),
            "on_no_match": Field(_STR, enum=("complete", "quiet"), noun="on_no_match value"),
        },
    ),
    "arc": Shape(
        "One arc.",
        {
            "step": Field(
                _STR, "target step ('end' finishes the branch when no step 'end' exists)", required=True
            ),
            "when": _CONDITION,
            "set": _MUTATIONS,
        },
    ),
}

_JSON_TYPE_NAMES: frozenset[str] = frozenset(
    {"string", "integer", "number", "boolean", "object", "array", "null"}
)


def json_schema() -> dict[str, JSON]:
    """The JSON Schema (draft 2020-12) of the canonical playbook format."""
    defs: dict[str, JSON] = {name: _shape_schema(shape) for name, shape in SHAPES.items()}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://noetl.io/schemas/playbook-v2.json",
        "title": "NoETL playbook",
        "$ref": "#/$defs/playbook",
        "$defs": defs,
    }


def _shape_schema(shape: Shape) -> JSON:
    schema: dict[str, JSON] = {
        "type": "object",
        "description": shape.doc,
        "properties": {key: _field_schema(f) for key, f in shape.fields.items()},
        "additionalProperties": shape.open,
    }
    required: list[JSON] = [key for key, f in shape.fields.items() if f.required]
    if required:
        schema["required"] = required
    if shape.one_of:
        schema["oneOf"] = [{"required": [key]} for key in shape.one_of]
    return schema


def _field_schema(f: Field) -> JSON:
    branches = [_type_schema(f, t) for t in f.types]
    schema: dict[str, JSON]
    if not branches:
        schema = {}
    elif len(branches) == 1:
        schema = branches[0]
    else:
        schema = {"anyOf": list[JSON](branches)}
    if f.doc:
        schema["description"] = f.doc
    return schema


def _type_schema(f: Field, json_type: JsonType) -> dict[str, JSON]:
    if json_type == "object" and f.shape is not None:
        return {"$ref": f"#/$defs/{f.shape}"}
    schema: dict[str, JSON] = {"type": json_type}
    if json_type == "array" and f.items is not None:
        schema["items"] = _items_schema(f.items)
        if f.min_items is not None:
            schema["minItems"] = f.min_items
    if json_type == "string" and f.enum:
        schema["enum"] = list[JSON](f.enum)
    if json_type == "integer" and f.minimum is not None:
        schema["minimum"] = f.minimum
    return schema


def _items_schema(items: str) -> dict[str, JSON]:
    if items in _JSON_TYPE_NAMES:
        return {"type": items}
    return {"$ref": f"#/$defs/{items}"}
