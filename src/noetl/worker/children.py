"""Sub-playbooks on a worker: ``Services.run_child`` for the ``playbook`` tool (REFERENCE §4.12).

The child is a full execution of its own, started through the orchestrator (execution row,
first events and first commands in one transaction) with the parent's execution id. With
``wait`` the caller's command waits until the child ends - polling the execution row, 10 ms
doubling to 500 ms - and gets ``{execution_id, status, result, error}``: the child's final result,
or with ``return_step`` that step's result, read from the child's folded event log. Without
``wait`` it gets ``{execution_id, status: "RUNNING"}`` at once.

Starts are idempotent per call: the child is keyed by the parent's command id and the call's
number within that run of the command, so a command that runs again after its lease expired (its
worker died while waiting) attaches to the child its first run started instead of starting a
second one, and a retried call (a later number) starts a new child.

A child runs at the priority of the command that started it, unless its playbook sets
``executor.spec.priority``.

A child needs worker slots of its own while its parent's command waits, so a playbook nesting N
levels deep needs at least N + 1 slots across the workers of its pool.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final

from noetl.engine.state import fold
from noetl.errors import ExecutionError, PlaybookError
from noetl.runtime import authz, results
from noetl.worker.database import Database, is_connection_error

if TYPE_CHECKING:
    from noetl.runtime.orchestration import Orchestrator
    from noetl.store.ports import CatalogEntry, ExecutionRow

TERMINAL: Final = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
FIRST_POLL: Final = 0.01
MAX_POLL: Final = 0.5


class Children:
    """Starts child executions and waits for them; ``run`` is the ``ChildRunner``."""

    def __init__(self, database: Database, orchestrator: Orchestrator | None = None) -> None:
        self._database = database
        self._orchestrator = orchestrator

    async def run(
        self,
        *,
        path: str,
        payload: dict[str, Any] | None = None,
        version: object = None,
        return_step: str | None = None,
        wait: bool = True,
        parent_execution_id: int | None = None,
        parent_key: str | None = None,
        parent_priority: int | None = None,
        catalog_id: object = None,
        **_: object,
    ) -> dict[str, Any]:
        entry = await self._entry(path, version, catalog_id)
        await self._database.run(
            "authorizing a sub-playbook", authz.child_check(parent_execution_id, entry.path)
        )
        child_id = await self._start(entry, payload, parent_execution_id, parent_key, parent_priority)
        if not wait:
            return {"execution_id": str(child_id), "status": "RUNNING"}
        row = await self._finished(child_id)
        result = row.result if not return_step else await self._step_result(child_id, return_step)
        result = await self._database.run(
            "reading a sub-playbook's loop results", lambda conn: results.hydrate_stored(conn, result)
        )
        return {"execution_id": str(child_id), "status": row.status, "result": result, "error": row.error}

    async def _entry(self, path: str, version: object, catalog_id: object) -> CatalogEntry:
        from noetl.store import catalog

        if catalog_id not in (None, ""):
            number = _integer(catalog_id, "catalog_id")
            entry = await self._database.run(
                "looking up a sub-playbook", lambda conn: catalog.get(conn, catalog_id=number)
            )
            where = f"catalog id {number}"
        else:
            wanted = None if version in (None, "", "latest") else _integer(version, "version")
            entry = await self._database.run(
                "looking up a sub-playbook", lambda conn: catalog.get(conn, path=path, version=wanted)
            )
            where = f"'{path}'" + (f" version {wanted}" if wanted is not None else "")
        if entry is None:
            raise PlaybookError(
                f"sub-playbook {where} is not in the catalog; register it first", field="path"
            )
        return entry

    async def _start(
        self,
        entry: CatalogEntry,
        payload: dict[str, Any] | None,
        parent: int | None,
        key: str | None,
        priority: int | None,
    ) -> int:
        from noetl.runtime.orchestration import Orchestrator

        if self._orchestrator is None:
            self._orchestrator = Orchestrator(self._database.pool)
        try:
            return await self._orchestrator.start(
                entry, payload, parent_execution_id=parent, parent_key=key, inherited_priority=priority
            )
        except Exception as exc:
            # Not retried: the start may have committed before the connection broke.
            if is_connection_error(exc):
                raise ExecutionError(f"could not start sub-playbook '{entry.path}': {exc}") from exc
            raise

    async def _finished(self, execution_id: int) -> ExecutionRow:
        from noetl.store import executions

        delay = FIRST_POLL
        while True:
            row = await self._database.run(
                "waiting for a sub-playbook", lambda conn: executions.get(conn, execution_id)
            )
            if row is None:
                raise ExecutionError(f"sub-playbook execution {execution_id} disappeared")
            if row.status in TERMINAL:
                return row
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_POLL)

    async def _step_result(self, execution_id: int, step: str) -> object:
        from noetl.store import events

        log = await self._database.run(
            "reading a sub-playbook's events", lambda c: events.read(c, execution_id)
        )
        return fold(log).results.get(step)


def _integer(value: object, field: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise PlaybookError(f"sub-playbook {field} must be an integer, got {value!r}", field=field)
