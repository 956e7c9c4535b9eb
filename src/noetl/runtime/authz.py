"""Authorization that follows an execution: catalog path patterns and the root principal.

The gateway authorizes each request against the principal that sent it; what runs afterwards on its
own - a sub-playbook started by a worker, an execute naming a ``parent_execution_id`` - is
authorized here against the principal recorded in the execution when its root was started
(``noetl.execution.principal``: name, role, paths; children copy their parent's). A playbook that a
``finance/*`` principal started cannot call ``hr/payroll`` as a sub-playbook, whatever its own path.

Executions recorded without a principal (started by the service itself: a schedule, a trigger, the
CLI with the service token; or before migration 0009) are not limited here.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from noetl.errors import Forbidden
from noetl.store import executions
from noetl.store.db import Connection


def path_allowed(patterns: Sequence[str], path: str | None) -> bool:
    """Whether ``path`` matches one of ``patterns`` (``fnmatch``; ``*`` is every path; none: no path)."""
    if "*" in patterns:
        return True
    return path is not None and any(fnmatch.fnmatchcase(path, p) for p in patterns)


def principal_record(name: str, role: str, paths: Sequence[str]) -> dict[str, Any]:
    """What an execution stores about the principal that started it."""
    return {"name": name, "role": role, "paths": list(paths)}


def check(principal: Mapping[str, Any] | None, path: str, what: str) -> None:
    """Forbidden unless ``principal`` (a recorded one, or None: unrestricted) may run ``path``."""
    if principal is None:
        return
    patterns = [p for p in principal.get("paths") or () if isinstance(p, str)]
    if not path_allowed(patterns, path):
        allowed = ", ".join(patterns) or "none"
        raise Forbidden(
            f"{what} '{path}' is outside the paths allowed to '{principal.get('name')}' "
            f"(who started the root execution; allowed: {allowed})",
            field="path",
        )


async def check_child(conn: Connection, parent_execution_id: int | None, path: str) -> None:
    """Before a sub-playbook starts: its path must be allowed to the root execution's principal."""
    if parent_execution_id is None:
        return
    check(await executions.principal(conn, parent_execution_id), path, "sub-playbook")


def child_check(parent_execution_id: int | None, path: str) -> Callable[[Connection], Awaitable[None]]:
    """:func:`check_child` as a step for ``Database.run`` (one line where a child is started)."""
    return lambda conn: check_child(conn, parent_execution_id, path)
