"""What a tool declares about itself, and the pydantic config models behind the newer tools.

A tool may declare, next to the ``kind``/``config_fields``/``required_fields``/``run`` of the
:class:`noetl.tools.base.Tool` protocol:

* ``config_model``: a pydantic model of its task fields. :func:`model_fields` derives the
  load-time ``config_fields``/``required_fields`` from it (names, JSON types, required fields;
  a string is always accepted at load time since it may be a template) and :func:`parse_config`
  validates the rendered fields in full when the task runs;
* ``description`` (one paragraph), ``credential_types`` (the credential ``type`` values its
  ``auth`` accepts), ``result`` (a JSON Schema of what it returns) and ``example`` (a YAML task).

:func:`describe` reads all of it (with defaults for tools that declare less) into the JSON that
``GET /api/tools``, ``noetl tool describe`` and ``noetl schema`` serve.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from noetl.dsl.model import JSON
from noetl.errors import ToolConfigError
from noetl.tools.base import Call, Tool

M = TypeVar("M", bound=BaseModel)

_PY_TYPES: Mapping[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}
_JSON_TYPES: Mapping[type, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    dict: "object",
    type(None): "null",
}
TIMEOUT_FIELDS = ("timeout", "timeout_seconds")


class Config(BaseModel):
    """Base of the tools' config models: unknown fields are errors; every task may set a timeout."""

    model_config = ConfigDict(extra="forbid")

    timeout: float | dict[str, float] | None = None
    timeout_seconds: float | None = None


def model_fields(model: type[BaseModel]) -> tuple[dict[str, tuple[type, ...]], tuple[tuple[str, ...], ...]]:
    """``(config_fields, required_fields)`` of the protocol, derived from a pydantic model."""
    schema = model.model_json_schema()
    properties: dict[str, Any] = schema.get("properties", {})
    fields = {name: _py_types(prop, schema) for name, prop in properties.items()}
    required = tuple((name,) for name in schema.get("required", ()))
    return fields, required


def _py_types(prop: Mapping[str, Any], root: Mapping[str, Any]) -> tuple[type, ...]:
    if "$ref" in prop:
        name = str(prop["$ref"]).rsplit("/", 1)[-1]
        return _py_types(root.get("$defs", {}).get(name, {}), root)
    branches = prop.get("anyOf") or prop.get("oneOf")
    if branches:
        found: list[type] = []
        for branch in branches:
            found.extend(t for t in _py_types(branch, root) if t not in found)
        return tuple(found)
    kind = prop.get("type")
    if isinstance(kind, list):
        return tuple(t for k in kind for t in _PY_TYPES.get(k, ()))
    if isinstance(kind, str):
        return _PY_TYPES.get(kind, ())
    if "enum" in prop or "const" in prop:
        return (str, int, float, bool)
    return (str, int, float, bool, list, dict, type(None))


def parse_config(model: type[M], call: Call) -> M:
    """The rendered task fields as ``model``; ToolConfigError naming the field, tool and step."""
    try:
        return model.model_validate(dict(call.config))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(task)"
        raise ToolConfigError(
            f"field '{where}' of {call.kind} task '{call.task}': {first['msg']}",
            step=call.step,
            field=where,
        ) from None


def config_schema(tool: Tool) -> dict[str, JSON]:
    """The JSON Schema of a tool's task fields (its model's, or one built from ``config_fields``)."""
    model = getattr(tool, "config_model", None)
    if isinstance(model, type) and issubclass(model, BaseModel):
        schema: dict[str, JSON] = model.model_json_schema()
        schema.setdefault("title", f"{tool.kind} task")
        return schema
    properties: dict[str, JSON] = {}
    for name, types in tool.config_fields.items():
        names = sorted({_JSON_TYPES[t] for t in types if t in _JSON_TYPES})
        properties[name] = {"type": names[0]} if len(names) == 1 else {"type": list[JSON](names)}
    result: dict[str, JSON] = {
        "title": f"{tool.kind} task",
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    groups = [list[JSON](group) for group in tool.required_fields]
    if groups:
        result["allOf"] = [{"anyOf": [{"required": [name]} for name in group]} for group in groups]
    return result


def describe(tool: Tool, *, version: str, provider: str) -> dict[str, JSON]:
    """Everything a tool declares, as JSON."""
    return {
        "kind": tool.kind,
        "version": version,
        "provider": provider,
        "description": str(getattr(tool, "description", "") or (type(tool).__doc__ or "").strip()),
        "config_schema": config_schema(tool),
        "credential_types": list[JSON](getattr(tool, "credential_types", ()) or ()),
        "result": getattr(tool, "result", None) or {"type": "object"},
        "example": str(getattr(tool, "example", "") or ""),
    }


def check_values(tool: Tool, config: Mapping[str, JSON], *, step: str, task: str) -> None:
    """Load-time check of the fields that are not templates against the tool's model, field by field.

    A value such as ``operation: rename`` where the model allows ``read | write | ...`` fails when
    the playbook is loaded, not when the step runs; template strings are left for run time.
    """
    model = getattr(tool, "config_model", None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return
    for name, value in config.items():
        info = model.model_fields.get(name)
        if info is None or (isinstance(value, str) and ("{{" in value or "{%" in value)):
            continue
        try:
            _adapter(model, name).validate_python(value)
        except ValidationError as exc:
            raise ToolConfigError(
                f"field '{name}' of tool kind '{tool.kind}' in task '{task}': {exc.errors()[0]['msg']}",
                step=step,
                field=name,
            ) from None


@cache
def _adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    annotation: Any = model.model_fields[name].annotation
    return TypeAdapter(annotation)
