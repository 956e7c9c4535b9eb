"""Who may do what: roles, catalog path patterns, and what a request asks for (pure rules).

Roles, each including the one below it:

=========  ============================================================================
viewer     read: catalog, executions, their events, status, workers, credential names (never data)
operator   + execute playbooks and cancel executions
developer  + register playbooks
admin      + everything else: credentials (write, read data), the worker queue API, raw events
=========  ============================================================================

A principal also carries catalog path patterns (``fnmatch``: ``finance/*``; ``*`` is everything);
register, execute and reading one execution are allowed only for playbooks whose path matches.
:func:`classify` turns a forwarded request (method, path after ``/noetl/``, query) into an
:class:`Action`; the gateway fills in the playbook path where the request does not carry it.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

RANKS: Final = {"viewer": 0, "operator": 1, "developer": 2, "admin": 3}
NEEDS: Final = {"read": "viewer", "execute": "operator", "register": "developer", "admin": "admin"}

_EXECUTION: Final = re.compile(r"^executions/(\d+)(?:/(.*))?$")


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: str
    paths: tuple[str, ...] = ("*",)
    via: str = "api_key"


@dataclass(frozen=True, slots=True)
class Action:
    """``kind``: read, execute, register or admin. ``execution_id`` when the request is about one
    execution (its path must be looked up); ``lookup``: where the playbook path is found."""

    kind: str
    execution_id: str | None = None
    lookup: str | None = None  # "register" (YAML body), "execute" (path or catalog_id), "execution"
    filter_list: bool = False
    scoped: bool = False
    """The server filters the answer by ``path_glob``: the gateway sets it to the principal's paths."""


def classify(method: str, path: str, query: Mapping[str, str]) -> Action:
    """What the request ``method /noetl/<path>?query`` asks for."""
    method, path = method.upper(), path.strip("/")
    match = _EXECUTION.match(path)
    if path.startswith("credentials"):
        reads_data = query.get("include_data", "").lower() in ("1", "true", "yes")
        return Action("read") if method == "GET" and not reads_data else Action("admin")
    if method == "GET":
        if match:
            # the UI's snapshot lists children, which may run other playbooks: filtered too
            listing = match[2] == "snapshot"
            return Action("read", execution_id=match[1], lookup="execution", filter_list=listing)
        if path in ("executions", "catalog"):
            return Action("read", filter_list=True)
        if path == "executions/search":  # the UI's list: exact pages for a restricted principal
            return Action("read", filter_list=True, scoped=True)
        if path == "executions/changes":  # the UI's change stream (SSE: cannot be filtered after)
            return Action("read", scoped=True)
        if path.startswith(("queue", "events")):
            return Action("admin")
        return Action("read")
    if method == "POST":
        if path == "catalog/register":
            return Action("register", lookup="register")
        if path in ("catalog/list", "catalog/resource"):
            return Action("read", filter_list=True)
        if path == "execute":
            return Action("execute", lookup="execute")
        if match and match[2] in ("cancel", "rerun"):
            return Action("execute", execution_id=match[1], lookup="execution")
        if path == "catalog/graph":  # the UI's graph of a catalog entry: the path is in the body
            return Action("read", lookup="execute")
    return Action("admin")


def role_allows(role: str, kind: str) -> bool:
    return RANKS.get(role, -1) >= RANKS[NEEDS[kind]]


def path_allowed(patterns: Sequence[str], playbook_path: str | None) -> bool:
    if "*" in patterns:
        return True
    return playbook_path is not None and any(fnmatch.fnmatchcase(playbook_path, p) for p in patterns)


def decide(principal: Principal, action: Action, playbook_path: str | None) -> str | None:
    """None when allowed, else the reason for a 403."""
    if not role_allows(principal.role, action.kind):
        return f"role '{principal.role}' may not {action.kind} (needs {NEEDS[action.kind]} or above)"
    if action.lookup is not None and not path_allowed(principal.paths, playbook_path):
        target = f"playbook '{playbook_path}'" if playbook_path else "this playbook"
        return f"{target} is outside the paths allowed to '{principal.name}' ({', '.join(principal.paths)})"
    return None


def valid_catalog_path(path: str) -> bool:
    """Catalog paths are relative, slash-separated names: no '..', no leading '/', no backslash."""
    parts = path.split("/")
    return (
        bool(path) and not path.startswith("/") and "\\" not in path and ".." not in parts and "" not in parts
    )


def scoped_query(
    action: Action, principal: Principal | None, query: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The query to forward: for a ``scoped`` action of a principal limited to some paths, any
    ``path_glob`` the caller sent is replaced by the principal's patterns."""
    if not action.scoped or principal is None or "*" in principal.paths:
        return query
    kept = [(k, v) for k, v in query if k != "path_glob"]
    patterns = principal.paths or ("",)  # no patterns: a glob no path matches
    return [*kept, *(("path_glob", p) for p in patterns)]
