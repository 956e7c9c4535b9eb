"""A playbook's input schema: what an execute payload may hold, and a run form for a UI.

The schema is derived from ``workload``: every key becomes a property whose type is the type of its
default (``10`` or ``2.5`` -> number: a whole default does not forbid a fraction; ``"eu"`` ->
string, ``true`` -> boolean, a list -> array, a map -> object, ``null`` -> any) and whose
``default`` is that value. Inline comments
on the workload's keys refine it, as upstream's ``ui_schema`` reads them::

    workload:
      region: eu        # ui:enum=[eu,us,apac]
      token: ""         # ui:secret
      limit: 10         # ui:description=Rows per page

An explicit JSON Schema in ``metadata.input_schema`` refines it further: its ``properties`` are
merged over the derived ones (key by key), and its ``required``, ``additionalProperties`` and
other top-level keywords apply as written. Payload keys the workload does not name are allowed
unless the explicit schema sets ``additionalProperties: false``.

:func:`validate_payload` checks a payload against the schema (the playbook's defaults filled in)
and raises :class:`PayloadError` (422) naming the field; :func:`ui_schema` is the same information
in upstream's ``ui_schema`` shape (``fields: [{name, kind, default, description, secret, options,
children, ...}]``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from noetl.dsl.model import JSON, Playbook
from noetl.errors import NoetlError, PlaybookError

_DIRECTIVE = re.compile(r"#\s*ui:(?P<key>[A-Za-z_][A-Za-z0-9_]*)(?:\s*=\s*(?P<value>[^\n#]*))?")
_KEY = re.compile(r"^(?P<indent> +)(?P<name>[A-Za-z_][A-Za-z0-9_-]*)\s*:")
_SCHEMA_KEY = "input_schema"


class PayloadError(NoetlError):
    """An execute payload that does not fit the playbook's input schema."""

    http_status = 422

    @property
    def kind(self) -> str:
        return "invalid_payload"


def directives(text: str | None) -> dict[str, dict[str, Any]]:
    """``# ui:`` hints on the immediate children of the top-level ``workload:`` map, by key."""
    found: dict[str, dict[str, Any]] = {}
    inside, child_indent = False, -1
    for line in (text or "").splitlines():
        stripped = line.lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(stripped)
        if indent == 0:
            inside, child_indent = stripped.startswith("workload:"), -1
            continue
        if not inside:
            continue
        if child_indent == -1:
            child_indent = indent
        match = _KEY.match(line)
        if indent != child_indent or match is None:
            continue
        hints = _line_hints(line)
        if hints:
            found[match["name"]] = hints
    return found


def _line_hints(line: str) -> dict[str, Any]:
    hints: dict[str, Any] = {}
    for match in _DIRECTIVE.finditer(line):
        key, value = match["key"], (match["value"] or "").strip()
        if key == "secret":
            hints["secret"] = True
        elif key == "enum":
            hints["enum"] = _list_value(value)
        elif key in ("description", "credential") and value:
            hints[key] = _unquote(value)
    return hints


def _list_value(text: str) -> list[str]:
    if text.startswith("[") and text.endswith("]"):
        return [_unquote(p.strip()) for p in text[1:-1].split(",") if p.strip()]
    return [_unquote(text)] if text else []


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def json_type(value: JSON) -> str | None:
    """The JSON Schema type of a default value (None for null: any type)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):  # `pause: 0` takes 0.3 too; say "integer" in input_schema to insist
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return None


def input_schema(playbook: Playbook, text: str | None = None) -> dict[str, JSON]:
    """The JSON Schema of the playbook's inputs (``text``: its YAML, for the ``# ui:`` hints)."""
    hints = directives(text)
    properties: dict[str, JSON] = {}
    for name, default in playbook.workload.items():
        prop: dict[str, JSON] = {"default": default}
        kind = json_type(default)
        if kind is not None:
            prop["type"] = kind
        hint = hints.get(name, {})
        if "enum" in hint:
            prop["enum"] = list(hint["enum"])
            prop.pop("type", None)
        if hint.get("secret"):
            prop["writeOnly"] = True
            prop["format"] = "password"
            prop.pop("default", None)  # a secret's default is never served
        if "description" in hint:
            prop["description"] = hint["description"]
        properties[name] = prop
    schema: dict[str, JSON] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": playbook.name,
        "type": "object",
        "properties": properties,
    }
    if playbook.description:
        schema["description"] = playbook.description
    explicit = playbook.metadata.get(_SCHEMA_KEY)
    if isinstance(explicit, dict):
        for key, value in explicit.items():
            if key == "properties" and isinstance(value, dict):
                for name, refined in value.items():
                    base = properties.get(name)
                    merged: JSON = refined
                    if isinstance(base, dict) and isinstance(refined, dict):
                        merged = {**base, **refined}
                    properties[name] = merged
            else:
                schema[key] = value
    return schema


def check_explicit_schema(playbook: Playbook) -> None:
    """``metadata.input_schema``, when present, must be a valid JSON Schema object."""
    explicit = playbook.metadata.get(_SCHEMA_KEY)
    if explicit is None:
        return
    field = f"metadata.{_SCHEMA_KEY}"
    if not isinstance(explicit, dict):
        raise PlaybookError(f"'{field}' must be a map (a JSON Schema)", field=field)
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(explicit)
    except SchemaError as exc:
        where = ".".join(str(p) for p in exc.absolute_path)
        suffix = f" at '{where}'" if where else ""
        raise PlaybookError(
            f"'{field}' is not a valid JSON Schema{suffix}: {exc.message}", field=field
        ) from None


def validate_payload(playbook: Playbook, payload: Mapping[str, Any] | None, text: str | None = None) -> None:
    """PayloadError naming the first field of ``payload`` that does not fit the input schema."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    schema = input_schema(playbook, text)
    values = {**playbook.workload, **(payload or {})}
    error = best_match(Draft202012Validator(schema).iter_errors(values))
    if error is None:
        return
    path = ".".join(str(p) for p in error.absolute_path)
    if not path and error.validator == "required":
        missing = [n for n in error.validator_value if n not in values]
        path = missing[0] if missing else ""
    if not path and error.validator == "additionalProperties":
        path = ", ".join(sorted(set(values) - set(schema.get("properties") or {})))  # type: ignore[arg-type]
    field = path or "payload"
    message = error.message
    if _is_secret(schema, path):  # never echo a secret value
        message = f"the value does not satisfy '{error.validator}: {error.validator_value}'"
    raise PayloadError(f"payload field '{field}': {message}", field=field)


def _is_secret(schema: Mapping[str, Any], path: str) -> bool:
    prop = (schema.get("properties") or {}).get(path.split(".", 1)[0])
    return isinstance(prop, dict) and bool(prop.get("writeOnly"))


def ui_fields(playbook: Playbook, text: str | None = None) -> list[dict[str, JSON]]:
    """The workload as upstream's ``ui_schema`` fields."""
    hints = directives(text)
    explicit = playbook.metadata.get(_SCHEMA_KEY)
    described = explicit.get("properties") if isinstance(explicit, dict) else None
    return [
        _ui_field(
            name, default, hints.get(name, {}), described.get(name) if isinstance(described, dict) else None
        )
        for name, default in playbook.workload.items()
    ]


def _ui_field(name: str, value: JSON, hint: Mapping[str, Any], explicit: JSON) -> dict[str, JSON]:
    description = hint.get("description")
    options: JSON = None
    if isinstance(explicit, dict):
        description = description or explicit.get("description")
        if isinstance(explicit.get("enum"), list):
            options = explicit["enum"]
    kind = json_type(value) or "null"
    if "enum" in hint:
        options = list(hint["enum"])
    if options is not None:
        kind = "enum"
    children: JSON = None
    if isinstance(value, dict):
        children = [_ui_field(str(k), v, {}, None) for k, v in value.items()]
    return {
        "name": name,
        "kind": kind,
        "default": None if hint.get("secret") else value,  # a secret's default is never served
        "description": description,
        "secret": bool(hint.get("secret")),
        "credential_glob": hint.get("credential"),
        "options": options,
        "children": children,
    }
