"""Sub-playbooks on a worker: ``Services.run_child`` for the ``playbook`` tool (REFERENCE §4.12).

The child is a full execution of its own, started through the orchestrator (execution row,
first events and first commands in one transaction) with the parent's execution id. Without
``wait`` the caller gets ``{execution_id, status: "RUNNING"}`` at once. With ``wait`` it gets
``{execution_id, status, result, error}`` once the child has ended: the child's final result, or
with ``return_step`` that step's result, read from the child's folded event log.

Waiting holds no worker slot. When the call is ``resumable`` (nothing but other sub-playbook calls
ran before it in this command) and the child has not ended, the call raises
:class:`~noetl.tools.base.Suspended`: the worker ends the command's run and parks it (``waiting``,
``call.waiting`` in the log, see ``Orchestrator.suspend``); the child's end makes it ready again,
it runs again from its start, and this call - attaching to the same child - returns its outcome.
A call that is not resumable (a task with effects ran before it in the same command) waits in the
worker, polling the execution row (10 ms doubling to 500 ms), holding its slot as before.

Starts are idempotent per call: the child is keyed by the parent's command id and the call's
number within that run of the command, so a command that runs again (it was parked, or its lease
expired because its worker died) attaches to the child its first run started instead of starting
a second one, and a retried call (a later number) starts a new child.

``timeout`` counts from the child's start (the database's clock, so it survives parking): a call
past it cancels the child and fails with a timeout. A child started while its parent is being
cancelled starts cancelled (``Orchestrator.start``); cancelling the parent cancels its children.

A child runs at the priority of the command that started it, unless its playbook sets
``executor.spec.priority``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final

from noetl.engine.state import fold
from noetl.errors import ExecutionError, PlaybookError
from noetl.runtime import authz, results
from noetl.tools.base import Suspended
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
        resumable: bool = False,
        timeout: float | None = None,
        **_: object,
    ) -> dict[str, Any]:
        entry = await self._entry(path, version, catalog_id)
        await self._database.run(
            "authorizing a sub-playbook", authz.child_check(parent_execution_id, entry.path)
        )
        child_id = await self._start(entry, payload, parent_execution_id, parent_key, parent_priority)
        if not wait:
            return {"execution_id": str(child_id), "status": "RUNNING"}
        if resumable and parent_key is not None:
            await self._park_unless_ended(child_id, timeout)
        row = await self._finished_within(child_id, timeout)
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

    async def _park_unless_ended(self, child_id: int, timeout: float | None) -> None:
        """Return if the child has ended; else raise :class:`Suspended` (the command is parked until
        it ends or its time is up), or past ``timeout`` cancel it and raise ``TimeoutError``."""
        from noetl.store import executions

        found = await self._database.run(
            "reading a sub-playbook's status", lambda conn: executions.age(conn, child_id)
        )
        if found is None:
            raise ExecutionError(f"sub-playbook execution {child_id} disappeared")
        status, age = found
        if status in TERMINAL:
            return
        remaining = None if timeout is None else timeout - age
        if remaining is not None and remaining <= 0:
            await self._cancel(child_id, f"the calling step's timeout of {timeout:g} s passed")
            raise TimeoutError
        raise Suspended({"kind": "playbook", "execution_id": str(child_id), "seconds": remaining})

    async def _finished_within(self, child_id: int, timeout: float | None) -> ExecutionRow:
        """Wait here for the child to end; when the caller's timeout cuts the wait, cancel the child."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            return await self._finished(child_id)
        except asyncio.CancelledError:
            if timeout is not None and loop.time() - started >= timeout * 0.99:
                reason = f"the calling step's timeout of {timeout:g} s passed"
                await asyncio.shield(self._cancel(child_id, reason))
            raise

    async def _cancel(self, child_id: int, reason: str) -> None:
        from noetl.runtime.orchestration import Orchestrator

        if self._orchestrator is None:
            self._orchestrator = Orchestrator(self._database.pool)
        await self._orchestrator.cancel(child_id, reason)

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
