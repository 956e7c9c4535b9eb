"""The local runtime: one process, events in memory, commands as asyncio tasks.

A driver around the pure engine::

    event ──decide──▶ new events + commands ──▶ asyncio tasks run the commands (task runner)
      ▲                                                        │
      └──────────── call.done / command.completed ◀────────────┘

Every event goes through :class:`EventLog` (ids, ``--events`` file, progress callback) and is
folded into the state the engine decides on. Sub-playbooks run as child executions of the same
runtime. Cancelling (Ctrl-C) records ``execution.cancel_requested``; the engine answers with
``command.cancelled`` for each command in flight and ``playbook.cancelled``, and their tasks are
cancelled.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from noetl.dsl.model import Playbook
from noetl.engine import events as ev
from noetl.engine.decide import Limits, advance, initial_event
from noetl.engine.state import State, apply
from noetl.errors import NoetlError
from noetl.runtime import results
from noetl.runtime.credentials import CredentialStore, NoCredentials
from noetl.runtime.ids import new_execution_id
from noetl.runtime.loader import Catalog
from noetl.runtime.report import outcome_events
from noetl.runtime.runner import Outcome, run_command
from noetl.tools.base import Services

EventSink = Callable[[str, ev.Event], None]
"""Called with (execution_id, event) for every event appended, children's included."""


@dataclass(slots=True)
class Execution:
    """A finished (or cancelled) execution: its playbook, final state and whole event log."""

    playbook: Playbook
    state: State
    events: list[ev.Event] = field(default_factory=list)

    @property
    def execution_id(self) -> str:
        return self.state.execution_id


class EventLog:
    """The in-memory log of one execution: assigns ids, folds, and tells the sink."""

    def __init__(self, state: State, sink: EventSink | None) -> None:
        self.state = state
        self.events: list[ev.Event] = []
        self.sink = sink

    def numbered(self, event: ev.Event) -> ev.Event:
        return replace(event, id=len(self.events) + 1)

    def append(self, event: ev.Event) -> None:
        """Number ``event``, fold it and record it."""
        event = self.numbered(event)
        apply(self.state, event)
        self.record(event)

    def record(self, event: ev.Event) -> None:
        """Record an event that is already numbered and folded (by ``advance``)."""
        self.events.append(event)
        if self.sink is not None:
            self.sink(self.state.execution_id, event)


class LocalRuntime:
    """Runs playbooks in this process. Use as ``async with LocalRuntime(...) as rt``."""

    def __init__(
        self,
        *,
        credentials: CredentialStore | None = None,
        catalog: Catalog | None = None,
        sink: EventSink | None = None,
        limits: Limits | None = None,
        python_pool_size: int | None = None,
        python_pool: Any = None,
        python_memory_mb: int | None = None,
    ) -> None:
        self.credentials = credentials or NoCredentials()
        self.catalog = catalog or Catalog([])
        self.sink = sink
        self.limits = limits or Limits()
        self.python_pool_size = python_pool_size
        self.python_memory_mb = python_memory_mb
        self.services = Services(python_pool=python_pool)
        self._background: set[asyncio.Task[Any]] = set()
        self._cancel_requests: list[asyncio.Queue[Any]] = []

    async def __aenter__(self) -> LocalRuntime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def warm_up(self, playbook: Playbook) -> None:
        """Start the python process pool early when the playbook will need it."""
        if any(task.kind == "python" for step in playbook.workflow for task in step.tool):
            self._python_pool().start()

    def _python_pool(self) -> Any:
        if self.services.python_pool is None:
            from noetl.tools.pychild import DEFAULT_MEMORY_MB
            from noetl.tools.pypool import PythonPool

            memory = self.python_memory_mb or DEFAULT_MEMORY_MB
            self.services.python_pool = PythonPool(size=self.python_pool_size, memory_mb=memory)
        return self.services.python_pool

    async def aclose(self) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        pool, self.services.python_pool = self.services.python_pool, None
        if pool is not None:
            await pool.close()
        for value in list(self.services.extras.values()):
            closer = getattr(value, "aclose", None)
            if closer is not None:
                await closer()
        self.services.extras.clear()

    def cancel(self, reason: str = "cancelled by user") -> None:
        """Ask every running execution of this runtime to cancel."""
        for queue in self._cancel_requests:
            queue.put_nowait(("cancel", reason))

    async def execute(
        self,
        playbook: Playbook,
        payload: dict[str, Any] | None = None,
        *,
        parent_execution_id: str | None = None,
        execution_id: str | None = None,
    ) -> Execution:
        """Run ``playbook`` to a terminal state and return it."""
        execution_id = execution_id or new_execution_id()
        self._python_pool() if _uses_python(playbook) else None
        services = Services(
            python_pool=self.services.python_pool,
            run_child=partial(self._run_child, parent_execution_id=execution_id),
            extras=self.services.extras,
        )
        driver = _Driver(self, playbook, execution_id, services)
        self._cancel_requests.append(driver.inbox)
        try:
            await driver.run(
                initial_event(
                    playbook, execution_id, payload, time.time(), parent_execution_id=parent_execution_id
                )
            )
        finally:
            self._cancel_requests.remove(driver.inbox)
        return Execution(playbook, driver.log.state, driver.log.events)

    async def _run_child(
        self,
        *,
        path: str,
        payload: dict[str, Any] | None = None,
        version: Any = None,
        return_step: str | None = None,
        wait: bool = True,
        parent_execution_id: str | None = None,
        **_: Any,
    ) -> dict[str, Any]:
        playbook = self.catalog.find(path)
        child_id = new_execution_id()
        run = self.execute(playbook, payload, parent_execution_id=parent_execution_id, execution_id=child_id)
        if not wait:
            task = asyncio.ensure_future(run)
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return {"execution_id": child_id, "status": "RUNNING"}
        child = await run
        state = child.state
        result = state.results.get(return_step) if return_step else state.final_result
        result = results.hydrate_from_events(result, child.events, child_id)
        return {"execution_id": child_id, "status": state.status, "result": result, "error": state.error}


def _uses_python(playbook: Playbook) -> bool:
    return any(task.kind == "python" for step in playbook.workflow for task in step.tool)


class _Driver:
    """Drives one execution: decides, starts commands, feeds their outcomes back."""

    def __init__(
        self, runtime: LocalRuntime, playbook: Playbook, execution_id: str, services: Services
    ) -> None:
        self.rt = runtime
        self.pb = playbook
        self.execution_id = execution_id
        self.services = services
        self.log = EventLog(State(), runtime.sink)
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.tasks: dict[str, asyncio.Task[None]] = {}

    async def run(self, first: ev.Event) -> None:
        self.submit(first)
        try:
            while not self.log.state.terminal:
                message = await self.inbox.get()
                if message[0] == "cancel":
                    self.submit(ev.Event(ev.CANCEL_REQUESTED, data={"reason": message[1]}, at=time.time()))
                    continue
                _, command, outcome = message
                self.tasks.pop(command.id, None)
                events = outcome_events(command, outcome, time.time())
                for event in events[:-1]:
                    self.log.append(event)
                self.submit(events[-1])
        finally:
            await self._stop_tasks()

    def submit(self, event: ev.Event) -> None:
        event = self.log.numbered(event)
        decision = advance(self.pb, self.log.state, event, time.time(), self.rt.limits)
        self.log.record(event)
        for new in decision.events:
            self.log.record(new)
            if new.name == ev.COMMAND_CANCELLED and new.command_id in self.tasks:
                self.tasks.pop(new.command_id).cancel()
        for command in decision.commands:
            self.tasks[command.id] = asyncio.ensure_future(self._run(command))

    async def _run(self, command: ev.Command) -> None:
        self.log.append(
            ev.Event(ev.COMMAND_STARTED, command.step, command.id, {"index": command.index}, time.time())
        )
        try:
            outcome = await run_command(
                self.pb,
                command.step,
                self._hydrated(command),
                execution_id=self.execution_id,
                services=self.services,
                credentials=self.rt.credentials,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the runner reports user problems itself; a bug must not hang the run
            kind = exc.kind if isinstance(exc, NoetlError) else "internal"
            message = str(exc) if isinstance(exc, NoetlError) else f"{type(exc).__name__}: {exc}"
            outcome = Outcome("error", None, {"kind": kind, "message": message}, {}, 0, 0.0)
        self.inbox.put_nowait(("done", command, outcome))

    def _hydrated(self, command: ev.Command) -> dict[str, Any]:
        """The command's context with the results of spilled loops it reads (DECISIONS 19)."""
        context = dict(command.context)
        wanted = results.referenced_refs(self.pb.steps[command.step], results.step_refs(context))
        mine = [ref for ref in wanted if str(ref["execution_id"]) == self.execution_id]
        if not mine:
            return context
        loaded = {results.key(ref): results.from_events(ref, self.log.events) for ref in mine}
        return results.hydrate_context(context, loaded)

    async def _stop_tasks(self) -> None:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.tasks.clear()
