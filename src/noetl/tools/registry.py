"""Finds tools through the ``noetl.tools`` entry-point group, loading each module on first use.

Tool modules import their heavy libraries (httpx, psycopg, duckdb) inside ``run`` so that
loading a playbook, or running one that never uses a tool, does not pay for the import.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from noetl.errors import ToolConfigError
from noetl.tools.base import Tool

GROUP = "noetl.tools"


@cache
def _entry_points() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def kinds() -> list[str]:
    """Every registered tool kind, sorted."""
    return sorted(_entry_points())


@cache
def get(kind: str) -> Tool:
    """The tool registered for ``kind``; ToolConfigError listing the known kinds otherwise."""
    ep = _entry_points().get(kind)
    if ep is None:
        raise ToolConfigError(f"unknown tool kind '{kind}'; known kinds: {', '.join(kinds())}", field="kind")
    tool = ep.load()  # type: ignore[attr-defined]
    if not isinstance(tool, Tool):
        raise ToolConfigError(f"entry point '{kind}' in group {GROUP} does not provide a Tool", field="kind")
    return tool
