"""The orchestration service of the distributed runtime: the engine driven over PostgreSQL.

Workers report a command's outcome by updating its row (``commands.report``) and notifying
``noetl_results``. An orchestration pass then, for a batch of executions, in ONE transaction per
batch and under a row lock per execution (ARCHITECTURE invariant 2):

1. reads the reported outcomes that are not recorded yet (and a pending cancel request);
2. folds them onto the execution's state (cached between passes; rebuilt from the event log when
   the cache is stale, e.g. after a restart or on another server replica);
3. runs the same pure ``decide`` as the local runtime for each terminal event;
4. appends the reported events and the decision's events to the log (per-execution ids, assigned
   here, so the log order is the order the engine saw), inserts the new commands, marks the
   outcomes recorded and updates the execution projection.

A crash anywhere leaves all of a batch or none of it. An outcome is recorded once: the command
row's ``recorded`` flag is set in the same transaction that appends its events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from noetl.dsl.model import Playbook
from noetl.engine import context as rctx
from noetl.engine import events as ev
from noetl.engine.decide import DEFAULT_LIMITS, Limits, advance, initial_event
from noetl.engine.state import State, checksum, fold
from noetl.errors import NoetlError
from noetl.runtime import loader
from noetl.store import catalog, commands, db, executions, ids
from noetl.store import events as event_log
from noetl.store.ports import CatalogEntry, ExecutionRow, NewCommand

log = logging.getLogger("noetl.orchestrator")

BATCH = 64


@dataclass(slots=True)
class _Work:
    """What one execution's part of a pass produced, before it is written."""

    row: ExecutionRow
    state: State
    events: list[ev.Event] = field(default_factory=list)
    commands: list[ev.Command] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)


class Orchestrator:
    """Starts executions and turns reported outcomes into the next commands."""

    def __init__(self, pool: Any, *, limits: Limits | None = None, catalog_cache_size: int = 256) -> None:
        self.pool = pool
        self.limits = limits or DEFAULT_LIMITS
        self._playbooks: OrderedDict[int, Playbook] = OrderedDict()
        self._cache_size = catalog_cache_size
        self._states: dict[int, State] = {}

    # -- starting ---------------------------------------------------------------------------------

    async def start(
        self, entry: CatalogEntry, payload: dict[str, Any] | None, *, parent_execution_id: int | None = None
    ) -> int:
        """Create an execution of ``entry`` and dispatch its entry step, in one transaction."""
        playbook = self._parse(entry)
        execution_id = ids.new_id()
        first = initial_event(
            playbook,
            str(execution_id),
            payload,
            time.time(),
            parent_execution_id=str(parent_execution_id) if parent_execution_id else None,
        )
        row = ExecutionRow(execution_id, entry.catalog_id, entry.path, "RUNNING", parent_execution_id)
        work = _Work(row, State())
        self._run(playbook, work, [first])
        async with self.pool.connection() as conn, conn.transaction(), conn.pipeline():
            await executions.create(
                conn, execution_id, entry.catalog_id, entry.path, payload or {}, parent_execution_id
            )
            await self._write(conn, work)
        self._states[execution_id] = work.state
        return execution_id

    # -- passes -----------------------------------------------------------------------------------

    async def run_pass(self, execution_ids: Iterable[int] | None = None) -> int:
        """Record reported outcomes of these executions (or of all with pending work); return how many."""
        async with self.pool.connection() as conn:
            if execution_ids is None:
                todo = await executions.with_pending_work(conn, 1000)
            else:
                todo = sorted(set(execution_ids))
            done = 0
            for start in range(0, len(todo), BATCH):
                done += await self._pass_batch(conn, todo[start : start + BATCH])
            return done

    async def _pass_batch(self, conn: Any, batch: list[int]) -> int:
        works: list[_Work] = []
        try:
            async with conn.transaction():
                rows = await executions.lock(conn, batch)
                pending = await commands.pending_results_many(conn, [r.execution_id for r in rows])
                for row in rows:
                    work = await self._collect(conn, row, pending.get(row.execution_id, []))
                    if work is not None:
                        works.append(work)
                        async with conn.pipeline():  # the writes go out in one round trip
                            await self._write(conn, work)
        except BaseException:
            for work in works:
                self._states.pop(work.row.execution_id, None)  # the cache may hold folds that never committed
            raise
        for work in works:
            if work.state.terminal:
                self._states.pop(work.row.execution_id, None)
            else:
                self._states[work.row.execution_id] = work.state
        return sum(len(w.recorded) for w in works)

    async def _collect(self, conn: Any, row: ExecutionRow, pending: list[Any]) -> _Work | None:
        incoming: list[ev.Event] = []
        for _command_id, _status, outcome in pending:
            incoming.extend(ev.Event.from_dict(raw) for raw in outcome or [])
        state = await self._state(conn, row)
        if row.cancel_requested and not state.terminal:
            incoming.append(ev.Event(ev.CANCEL_REQUESTED, data={"reason": row.cancel_reason or "cancelled"}))
        if not incoming:
            if pending:
                work = _Work(row, state, recorded=[p[0] for p in pending])
                return work
            return None
        playbook = await self._playbook(conn, row.catalog_id)
        work = _Work(row, state, recorded=[p[0] for p in pending])
        self._run(playbook, work, incoming)
        return work

    def _run(self, playbook: Playbook, work: _Work, incoming: list[ev.Event]) -> None:
        """Fold ``incoming`` onto the state, deciding on each; collect events and commands."""
        state = work.state
        for event in incoming:
            now = time.time()
            event = replace(event, id=state.last_event_id + 1, at=event.at or now)
            decision = advance(playbook, state, event, now, self.limits)
            work.events.append(event)
            work.events.extend(decision.events)
            work.commands.extend(decision.commands)

    async def _write(self, conn: Any, work: _Work) -> None:
        row, state = work.row, work.state
        if work.events:
            await event_log.append(conn, row.execution_id, work.events[0].id, work.events)
        cancelled = {e.command_id for e in work.events if e.name == ev.COMMAND_CANCELLED}
        new = [
            NewCommand(
                command_id=c.id,
                execution_id=row.execution_id,
                catalog_id=row.catalog_id,
                step=c.step,
                index=c.index,
                context=rctx.to_wire(dict(c.context)),
                priority=c.priority,
            )
            for c in work.commands
            if c.id not in cancelled
        ]
        if new:
            await commands.insert(conn, new)
        if work.recorded:
            await commands.mark_recorded(conn, work.recorded)
        if cancelled or state.status == "CANCELLED":
            await commands.cancel(conn, row.execution_id)
        if state.terminal:
            await executions.update(
                conn,
                row.execution_id,
                status=state.status,
                last_event_id=state.last_event_id,
                result=state.final_result,
                error=state.error,
            )
        else:
            await executions.update(
                conn, row.execution_id, status=state.status, last_event_id=state.last_event_id
            )

    # -- state and playbooks ----------------------------------------------------------------------

    async def _state(self, conn: Any, row: ExecutionRow) -> State:
        cached = self._states.get(row.execution_id)
        if cached is not None and cached.last_event_id == row.last_event_id:
            return cached
        state = fold(await event_log.read(conn, row.execution_id))
        self._states[row.execution_id] = state
        return state

    async def _playbook(self, conn: Any, catalog_id: int | None) -> Playbook:
        if catalog_id is not None and catalog_id in self._playbooks:
            self._playbooks.move_to_end(catalog_id)
            return self._playbooks[catalog_id]
        entry = await catalog.get(conn, catalog_id=catalog_id)
        if entry is None:
            raise NoetlError(f"catalog entry {catalog_id} not found")
        return self._parse(entry)

    def _parse(self, entry: CatalogEntry) -> Playbook:
        playbook = self._playbooks.get(entry.catalog_id)
        if playbook is None:
            playbook = loader.parse(entry.content, source=entry.path)
            self._playbooks[entry.catalog_id] = playbook
            while len(self._playbooks) > self._cache_size:
                self._playbooks.popitem(last=False)
        return playbook

    # -- cancellation, replay ---------------------------------------------------------------------

    async def cancel(self, execution_id: int, reason: str, cascade: bool = True) -> bool:
        """Request cancellation (and of the children, with ``cascade``); False if already finished."""
        targets = [execution_id]
        async with self.pool.connection() as conn:
            row = await executions.get(conn, execution_id)
            if row is None or row.status != "RUNNING":
                return False
            seen: set[int] = set()
            while targets:
                current = targets.pop()
                if current in seen:
                    continue
                seen.add(current)
                async with conn.transaction():
                    await executions.request_cancel(conn, current, reason)
                if cascade:
                    targets.extend(await executions.children(conn, current))
        await self.run_pass(seen)
        return True

    async def state(self, execution_id: int, as_of_event_id: int | None = None) -> tuple[State, str]:
        """The folded state of an execution as of an event (replay), and its checksum."""
        async with self.pool.connection() as conn:
            events = await event_log.read(conn, execution_id)
        if as_of_event_id is not None:
            events = [e for e in events if e.id <= as_of_event_id]
        state = fold(events)
        return state, checksum(state)

    # -- the loop ---------------------------------------------------------------------------------

    async def serve(self, url: str, stop: asyncio.Event, poll_interval: float = 1.0) -> None:
        """Run passes when outcomes are reported (LISTEN ``noetl_results``) until ``stop`` is set.

        Notified executions are handled at once; every ``poll_interval`` without notifications, and
        at least every ``5 * poll_interval`` under load, a full scan picks up anything else (for
        example commands the reaper failed). A lost connection is retried with backoff.
        """
        delay = 0.1
        while not stop.is_set():
            try:
                async with db.listen(url, ["noetl_results"]) as notes:
                    delay = 0.1
                    await self.run_pass(None)  # whatever was reported while nobody listened
                    last_scan = time.monotonic()
                    while not stop.is_set():
                        received = await notes.wait(poll_interval)
                        ids = {int(p) for _, p in received if p.isdigit()}
                        if not ids or time.monotonic() - last_scan > 5 * poll_interval:
                            await self.run_pass(None)
                            last_scan = time.monotonic()
                        if ids:
                            await self.run_pass(ids)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database went away: keep serving once it is back
                log.warning("orchestrator loop failed (%s); retrying in %.1fs", exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 5.0)
