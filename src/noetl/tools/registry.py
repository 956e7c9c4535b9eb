"""The open tool registry: a tool kind is whatever this registry holds.

Every tool, built-in or plug-in, is registered in the ``noetl.tools`` entry-point group
(``pyproject.toml`` registers the built-in ones; a third-party distribution registers its own).
Looking a built-in kind up does not scan the installed distributions, though:
``importlib.metadata`` alone costs tens of milliseconds of start-up, so the built-in kinds resolve
straight to the ``noetl.tools.<module>:TOOL`` objects their entry points name (a test checks the
two agree), and the group is read only for a kind that is not built in.

:data:`KINDS` is the collection the parser checks a task's ``kind`` against: membership of a
built-in kind is a dictionary lookup; anything else consults the installed entry points.

Tool modules import their heavy libraries (httpx, psycopg, duckdb, boto3) inside ``run`` so that
loading a playbook, or running one that never uses a tool, does not pay for the import.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from functools import cache
from importlib import import_module
from typing import Any

from noetl.dsl import schema as dsl_schema
from noetl.dsl.model import JSON, TOOL_KINDS
from noetl.errors import ToolConfigError
from noetl.tools.base import Tool

GROUP = "noetl.tools"
INTEGRATION_KINDS: tuple[str, ...] = ("file", "s3", "nats", "clickhouse")
"""Built-in kinds beyond the core language (:data:`noetl.dsl.model.TOOL_KINDS`)."""

BUILTIN = {kind: f"noetl.tools.{kind}:TOOL" for kind in TOOL_KINDS} | {
    kind: f"noetl.tools.{kind}_tool:TOOL" for kind in INTEGRATION_KINDS
}


@cache
def entry_points() -> dict[str, Any]:
    """The ``noetl.tools`` entry points of every installed distribution, by name."""
    from importlib.metadata import entry_points as installed

    return {ep.name: ep for ep in installed(group=GROUP)}


def kinds() -> list[str]:
    """Every registered tool kind, sorted."""
    return sorted(set(BUILTIN) | set(entry_points()))


class _Kinds(Collection[str]):
    """The registered kinds, as the parser's ``kinds``: cheap membership for built-in kinds."""

    def __contains__(self, kind: object) -> bool:
        return kind in BUILTIN or (isinstance(kind, str) and kind in entry_points())

    def __iter__(self) -> Iterator[str]:
        return iter(kinds())

    def __len__(self) -> int:
        return len(kinds())


KINDS: Collection[str] = _Kinds()


@cache
def get(kind: str) -> Tool:
    """The tool registered for ``kind``; ToolConfigError listing the known kinds otherwise."""
    target = BUILTIN.get(kind)
    if target is not None:
        module, _, attr = target.partition(":")
        tool = getattr(import_module(module), attr)
    else:
        ep = entry_points().get(kind)
        if ep is None:
            raise ToolConfigError(
                f"unknown tool kind '{kind}'; installed kinds: {', '.join(kinds())}", field="kind"
            )
        try:
            tool = ep.load()
        except Exception as exc:  # a broken plug-in must not take the runtime down with it
            raise ToolConfigError(
                f"tool kind '{kind}' ({ep.value}) cannot be loaded: {type(exc).__name__}: {exc}",
                field="kind",
            ) from None
    if not isinstance(tool, Tool):
        raise ToolConfigError(f"entry point '{kind}' in group {GROUP} does not provide a Tool", field="kind")
    return tool


def version(kind: str) -> str:
    """The version of the distribution that provides ``kind``."""
    if kind in BUILTIN:
        from noetl import __version__

        return __version__
    ep = entry_points().get(kind)
    dist = getattr(ep, "dist", None)
    return str(getattr(dist, "version", None) or "unknown")


def provider(kind: str) -> str:
    """The distribution that provides ``kind`` (``noetl`` for the built-in ones)."""
    if kind in BUILTIN:
        return "noetl"
    dist = getattr(entry_points().get(kind), "dist", None)
    return str(getattr(dist, "name", None) or "unknown")


def describe(kind: str) -> dict[str, JSON]:
    """Name, version, description, config JSON Schema, credential types, result shape and example."""
    from noetl.tools import spec  # pydantic: only when a description is asked for

    return spec.describe(get(kind), version=version(kind), provider=provider(kind))


def describe_all() -> list[dict[str, JSON]]:
    """:func:`describe` of every registered kind; a plug-in that fails to load says why."""
    found: list[dict[str, JSON]] = []
    for kind in kinds():
        try:
            found.append(describe(kind))
        except ToolConfigError as exc:
            found.append({"kind": kind, "provider": provider(kind), "error": exc.message})
    return found


def playbook_schema() -> dict[str, JSON]:
    """The playbook JSON Schema with the registered kinds and each tool's own task fields.

    :func:`noetl.dsl.schema.json_schema` describes the language; here a task's ``kind`` lists the
    installed kinds, and for each kind the task's other keys must be that tool's fields (any of
    them may be a template string, rendered when the task runs).
    """
    schema = dsl_schema.json_schema()
    defs = schema["$defs"]
    assert isinstance(defs, dict)
    task = defs["task"]
    assert isinstance(task, dict)
    common = task["properties"]
    assert isinstance(common, dict)
    kind_field = common["kind"]
    assert isinstance(kind_field, dict)
    installed = [d for d in describe_all() if "config_schema" in d]
    kind_field["enum"] = [d["kind"] for d in installed]
    rules: list[JSON] = []
    for tool in installed:
        tool_schema = tool["config_schema"]
        assert isinstance(tool_schema, dict)
        defs.update(_hoisted_defs(tool_schema))
        properties = tool_schema.get("properties") or {}
        assert isinstance(properties, dict)
        templated: dict[str, JSON] = {
            name: {"anyOf": [prop, {"type": "string"}]} for name, prop in properties.items()
        }
        names: list[JSON] = list(sorted({*common, *properties}))
        rules.append(
            {
                "if": {"properties": {"kind": {"const": tool["kind"]}}, "required": ["kind"]},
                "then": {"properties": templated, "propertyNames": {"enum": names}},
            }
        )
    task["allOf"] = rules
    return schema


def _hoisted_defs(tool_schema: dict[str, JSON]) -> dict[str, JSON]:
    nested = tool_schema.pop("$defs", None)
    return dict(nested) if isinstance(nested, dict) else {}
