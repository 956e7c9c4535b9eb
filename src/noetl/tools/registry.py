"""Finds tools through the ``noetl.tools`` entry-point group, loading each module on first use.

Every tool, built-in or plug-in, is registered in that group (``pyproject.toml`` registers the
built-in ones). Looking a built-in kind up does not scan the installed distributions, though:
``importlib.metadata`` alone costs tens of milliseconds of start-up, so the built-in kinds resolve
straight to the ``noetl.tools.<kind>:TOOL`` objects their entry points name (a test checks the
two agree), and the group is read only for a kind that is not built in.

Tool modules import their heavy libraries (httpx, psycopg, duckdb) inside ``run`` so that
loading a playbook, or running one that never uses a tool, does not pay for the import.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module
from typing import Any

from noetl.dsl.model import TOOL_KINDS
from noetl.errors import ToolConfigError
from noetl.tools.base import Tool

GROUP = "noetl.tools"
BUILTIN = {kind: f"noetl.tools.{kind}:TOOL" for kind in TOOL_KINDS}


@cache
def entry_points() -> dict[str, Any]:
    """The ``noetl.tools`` entry points of every installed distribution, by name."""
    from importlib.metadata import entry_points as installed

    return {ep.name: ep for ep in installed(group=GROUP)}


def kinds() -> list[str]:
    """Every registered tool kind, sorted."""
    return sorted(set(BUILTIN) | set(entry_points()))


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
                f"unknown tool kind '{kind}'; known kinds: {', '.join(kinds())}", field="kind"
            )
        tool = ep.load()
    if not isinstance(tool, Tool):
        raise ToolConfigError(f"entry point '{kind}' in group {GROUP} does not provide a Tool", field="kind")
    return tool
