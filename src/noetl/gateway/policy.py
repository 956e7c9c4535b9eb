"""Who may do what: roles, catalog path patterns, and the routes the gateway exposes (pure rules).

Roles, each including the one below it:

=========  ============================================================================
viewer     read: catalog, executions, their events, status, workers, credential names (never data)
operator   + execute playbooks and cancel executions
developer  + register playbooks
admin      + everything else: credentials (write, read data), the worker queue API, raw events,
           metrics, schedules, triggers and resources (write)
=========  ============================================================================

A principal also carries catalog path patterns (``fnmatch``: ``finance/*``; ``*`` is everything;
none at all: nothing). Everything about one playbook or one execution - register, execute, read
or cancel an execution, replay its state, its statistics - is allowed only when the playbook's
path matches; lists are filtered to matching entries.

:data:`ROUTES` names every route the gateway forwards; :func:`classify` matches a canonical
request (method, decoded path parts after ``/noetl/``) against it. A route it does not name is
refused (deny by default): the server's own pages (``/docs``, ``/openapi.json``) and anything added
to the server later stay unreachable through the gateway until the policy names them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

from noetl.dsl import catalogpath
from noetl.runtime import authz

RANKS: Final = {"viewer": 0, "operator": 1, "developer": 2, "admin": 3}
NEEDS: Final = {"read": "viewer", "execute": "operator", "register": "developer", "admin": "admin"}


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: str
    paths: tuple[str, ...] = ()
    via: str = "api_key"


@dataclass(frozen=True, slots=True)
class Action:
    """``kind``: read, execute, register or admin (``denied``: a route the policy does not name).

    ``lookup``: where the playbook path the decision needs comes from - ``register`` (the YAML
    body), ``entry`` (a catalog entry named by ``catalog_id`` or ``path``/``version`` in the body:
    resolved to one entry), ``execution`` (the execution ``execution_id`` names), ``url`` (the
    path parts after the route's prefix). ``filter_list``: the answer is a list to filter to the
    principal's paths; ``all_paths``: only a principal with ``*`` may use it (answers that cannot
    be filtered, e.g. event streams)."""

    kind: str
    execution_id: str | None = None
    lookup: str | None = None
    filter_list: bool = False
    all_paths: bool = False
    url_path: str | None = None


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    action: Action


def _route(method: str, pattern: str, kind: str, **fields: object) -> Route:
    return Route(method, re.compile(pattern), Action(kind, **fields))  # type: ignore[arg-type]


EXECUTION: Final = r"executions/(?P<execution>\d+)"
ROUTES: Final = (
    _route("GET", r"health", "read"),
    _route("GET", r"health/db", "admin"),
    # catalog
    _route("POST", r"catalog/register", "register", lookup="register"),
    _route("POST", r"catalog/list", "read", filter_list=True),
    _route("POST", r"catalog/resource", "read", lookup="entry"),
    _route("POST", r"catalog/graph", "read", lookup="entry"),
    # a playbook's input schema (the UI's run form): the playbook path is in the URL
    _route("GET", r"catalog/(?P<url>.+)/(schema|ui_schema)", "read", lookup="url"),
    # executions
    _route("POST", r"execute", "execute", lookup="entry"),
    _route("GET", r"executions", "read", filter_list=True),
    _route("GET", r"executions/search", "read", filter_list=True),
    # the UI's change stream: the server keeps only the paths in the forwarded X-NoETL-Paths
    _route("GET", r"executions/changes", "read"),
    _route("GET", EXECUTION, "read", lookup="execution", filter_list=True),
    _route("GET", EXECUTION + r"/(events|status|snapshot|timeline|log)", "read", lookup="execution"),
    _route("GET", EXECUTION + r"/stream", "read", lookup="execution"),
    _route("GET", EXECUTION + r"/steps/[^/]+", "read", lookup="execution"),
    _route("POST", EXECUTION + r"/(cancel|rerun)", "execute", lookup="execution"),
    _route("GET", r"replay/state", "read", lookup="execution"),
    _route("GET", r"stats/(?P<url>.+)", "read", lookup="url"),
    # credentials (reading data: admin, decided in classify)
    _route("GET", r"credentials", "read"),
    _route("GET", r"credentials/[^/]+", "read"),
    _route("POST", r"credentials", "admin"),
    _route("DELETE", r"credentials/[^/]+", "admin"),
    # tools, workers, scheduling
    _route("GET", r"tools(/[^/]+)?", "read"),
    _route("GET", r"worker/pools", "read", filter_list=True),
    _route("GET", r"schedules", "read", filter_list=True),
    _route("GET", r"triggers", "read", filter_list=True),
    _route("GET", r"resources", "read"),
    _route("POST", r"schedules", "admin"),
    _route("POST", r"schedules/[^/]+/(pause|resume)", "admin"),
    _route("DELETE", r"schedules/[^/]+", "admin"),
    _route("PUT", r"triggers/[^/]+/config", "admin"),
    _route("DELETE", r"triggers/[^/]+/config", "admin"),
    _route("POST", r"triggers/[^/]+", "admin"),
    _route("PUT", r"resources/[^/]+", "admin"),
    _route("DELETE", r"resources/[^/]+", "admin"),
    # operations: the queue, raw events, the worker API, metrics, telemetry export
    _route("GET", r"queue", "admin"),
    _route("GET", r"metrics", "admin"),
    _route("GET", r"export/status", "admin"),
    _route("POST", r"export/backfill", "admin"),
    _route("POST", r"events(/batch)?", "admin"),
    _route("POST", r"commands/(claim|heartbeat|release)", "admin"),
    _route("POST", r"worker/pool/(register|heartbeat|deregister)", "admin"),
    _route("DELETE", r"worker/pool/deregister", "admin"),
    _route("GET", EXECUTION + r"/cancellation-check", "admin"),
)
DENIED: Final = Action("denied")


def classify(method: str, path: str, include_data: bool = False) -> Action:
    """What the canonical request ``method /noetl/<path>`` asks for; ``denied`` when no route of
    :data:`ROUTES` names it. ``include_data`` (already parsed) makes a credential read admin-only."""
    method = method.upper()
    for route in ROUTES:
        if route.method != method:
            continue
        match = route.pattern.fullmatch(path)
        if match is None:
            continue
        groups = match.groupdict()
        action = replace(route.action, execution_id=groups.get("execution"), url_path=groups.get("url"))
        if path.startswith("credentials/") and include_data:
            return Action("admin")
        return action
    return DENIED


def role_allows(role: str, kind: str) -> bool:
    return RANKS.get(role, -1) >= RANKS[NEEDS[kind]]


def path_allowed(patterns: Sequence[str], playbook_path: str | None) -> bool:
    """The server's rule (:func:`noetl.runtime.authz.path_allowed`): one definition for both."""
    return authz.path_allowed(patterns, playbook_path)


def decide(principal: Principal, action: Action, playbook_path: str | None) -> str | None:
    """None when allowed, else the reason for a 403."""
    if action.kind == "denied":
        return "the gateway does not expose this route"
    if not role_allows(principal.role, action.kind):
        return f"role '{principal.role}' may not {action.kind} (needs {NEEDS[action.kind]} or above)"
    if action.all_paths and "*" not in principal.paths:
        return f"this route is only for principals allowed every path ('{principal.name}' is not)"
    if action.lookup is not None and not path_allowed(principal.paths, playbook_path):
        target = f"playbook '{playbook_path}'" if playbook_path else "this playbook"
        allowed = ", ".join(principal.paths) or "none"
        return f"{target} is outside the paths allowed to '{principal.name}' ({allowed})"
    return None


def valid_catalog_path(path: str) -> bool:
    """See :mod:`noetl.dsl.catalogpath`."""
    return catalogpath.problem(path) is None
