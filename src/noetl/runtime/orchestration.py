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

The same pass also runs on the worker, right after it reports (:meth:`Orchestrator.record`): in
the report's own transaction the worker takes each execution's lock (waiting for a pass that holds
it: passes are short, and the waiting worker's next batch grows meanwhile), records and decides
exactly as the server would, and leases the new commands it has room for to itself. One commit per
step instead of three (report, pass, claim), and no wake-up in between. Locks are taken in
execution id order, so two workers never deadlock; the server's passes skip locked executions
instead of waiting. The server remains the decider for everything else: starts, cancellations,
commands the reaper failed, and reports of workers running with ``decide`` off.

A command whose run waits for a sub-playbook is parked (:meth:`Orchestrator.suspend`): status
``waiting``, no worker slot, ``call.waiting`` in the log. Whoever records the child's end wakes it
in that same transaction (``commands.wake_waiters``); it then runs again and its call finds the
child ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from noetl.dsl.model import Playbook
from noetl.engine import context as rctx
from noetl.engine import events as ev
from noetl.engine.decide import DEFAULT_LIMITS, Limits, advance, initial_event
from noetl.engine.state import State, checksum, fold
from noetl.errors import NoetlError
from noetl.runtime import loader, placement
from noetl.store import catalog, commands, db, decisions, executions, ids
from noetl.store import events as event_log
from noetl.store.ports import CatalogEntry, ExecutionRow, Lease, NewCommand, PendingResult, Report

log = logging.getLogger("noetl.orchestrator")

BATCH = 64
STATE_CACHE = 4096
"""Folded states kept between passes (least recently used dropped first; a miss refolds the log)."""
RETRY_BUSY = 0.002
"""Seconds before the server retries notified executions whose lock another pass held."""


@dataclass(frozen=True, slots=True)
class Take:
    """What a reporting worker may lease to itself from the commands its report produces."""

    worker_id: str
    pools: frozenset[str]
    limit: int
    lease_seconds: float


@dataclass(slots=True)
class Recorded:
    """The result of :meth:`Orchestrator.record`: reports the queue accepted, and leases taken."""

    accepted: set[str] = field(default_factory=set)
    leases: list[Lease] = field(default_factory=list)


@dataclass(slots=True)
class _Work:
    """What one execution's part of a pass produced, before it is written."""

    row: ExecutionRow
    state: State
    events: list[ev.Event] = field(default_factory=list)
    commands: list[ev.Command] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)
    playbook: Playbook | None = None


class Orchestrator:
    """Starts executions and turns reported outcomes into the next commands."""

    def __init__(
        self,
        pool: Any,
        *,
        limits: Limits | None = None,
        catalog_cache_size: int = 256,
        kind_pools: Mapping[str, str] | None = None,
    ) -> None:
        self.pool = pool
        self.limits = limits or DEFAULT_LIMITS
        self.kind_pools: Mapping[str, str] = dict(kind_pools or {})
        """Tool kind -> pool for steps that name none (``placement.pool``)."""
        self._playbooks: OrderedDict[int, Playbook] = OrderedDict()
        self._cache_size = catalog_cache_size
        self._states: OrderedDict[int, State] = OrderedDict()
        self.passes = 0
        """Passes this process ran (``run_pass`` batches; reported by the server's ``/metrics``)."""
        self.recorded = 0
        """Outcomes those passes recorded."""
        self.busy: set[int] = set()
        """Executions a pass was asked for but found locked by another pass (retried by ``serve``)."""

    # -- starting ---------------------------------------------------------------------------------

    async def start(
        self,
        entry: CatalogEntry,
        payload: dict[str, Any] | None,
        *,
        parent_execution_id: int | None = None,
        parent_key: str | None = None,
        priority: int | None = None,
        inherited_priority: int | None = None,
        playbook: Playbook | None = None,
        lineage: Mapping[str, Any] | None = None,
        principal: Mapping[str, Any] | None = None,
    ) -> int:
        """Create an execution of ``entry`` and dispatch its entry step, in one transaction.

        ``lineage`` adds keys to the first event: a re-run's ``rerun_of`` and ``resume`` (the step it
        starts from and what the steps before it left, ``noetl.server.rerun``).

        With ``parent_key`` (a sub-playbook call: the parent's command id and the call's number in
        that run of the command) the start is idempotent: when that call already started a child -
        the command is running again after its lease expired - that child's id is returned and
        nothing new is started. ``priority`` (the execute request's) replaces the playbook's
        ``executor.spec.priority``; ``inherited_priority`` (a sub-playbook's: the calling command's)
        does so only when the playbook sets none. ``playbook`` is ``entry`` parsed already (the
        server's cache parsed it off the event loop); without it, ``entry`` is parsed here.
        ``principal`` (``{name, role, paths}``) is who the execution runs for (a child started by a
        call copies its parent's instead)."""
        if playbook is None:
            playbook = self._parse(entry)
        else:
            self._keep(entry.catalog_id, playbook)
        if priority is None and inherited_priority and not playbook.executor.priority:
            priority = inherited_priority
        execution_id = ids.new_id()
        first = initial_event(
            playbook,
            str(execution_id),
            payload,
            time.time(),
            parent_execution_id=str(parent_execution_id) if parent_execution_id else None,
        )
        if priority is not None:
            first = replace(first, data={**first.data, "priority": priority})
        if lineage:
            first = replace(first, data={**first.data, **lineage})
        row = ExecutionRow(execution_id, entry.catalog_id, entry.path, "RUNNING", parent_execution_id)
        work = _Work(row, State())
        self._run(playbook, work, [first])
        async with self.pool.connection() as conn, conn.transaction():
            if parent_key is not None and parent_execution_id is not None:
                parent = await executions.hold_parent(conn, parent_execution_id)
                created = await executions.create_child(
                    conn,
                    execution_id,
                    entry.catalog_id,
                    entry.path,
                    payload or {},
                    parent_execution_id,
                    parent_key,
                )
                if created is None:
                    earlier = await executions.child_by_key(conn, parent_execution_id, parent_key)
                    if earlier is None:  # cannot happen: the conflicting row is visible once it committed
                        raise NoetlError(f"sub-playbook call {parent_key} conflicts with an unknown child")
                    return earlier
                if parent is not None and (parent[0] != "RUNNING" or parent[1]):
                    # the parent is being cancelled (or has ended): its child starts cancelled
                    reason = parent[2] or "the parent execution was cancelled"
                    await executions.request_cancel(conn, execution_id, reason)
            else:
                await executions.create(
                    conn,
                    execution_id,
                    entry.catalog_id,
                    entry.path,
                    payload or {},
                    parent_execution_id,
                    principal=dict(principal) if principal is not None else None,
                )
            await self._write(conn, work)
        self._remember(work)
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
                self.passes += 1
            self.recorded += done
            return done

    async def _pass_batch(self, conn: Any, batch: list[int]) -> int:
        works: list[_Work] = []
        try:
            async with conn.transaction():
                opened = await decisions.open(conn, batch)
                locked = {r.execution_id for r in opened.rows}
                # retry only executions another pass holds: one that ended (a cancel, a late
                # report) has nothing left to record, and retrying it would spin (issue 17)
                self.busy.update(opened.busy)
                self.busy.difference_update(locked)
                works = await self._decide_locked(conn, opened.rows, opened.pending)
        except BaseException:
            self._forget(batch)
            raise
        for work in works:
            self._remember(work)
        return sum(len(w.recorded) for w in works)

    async def record(self, conn: Any, reports: list[Report], take: Take | None = None) -> Recorded:
        """Report outcomes, then record them and decide, in one transaction of two statements.

        ``decisions.open`` reports, locks each of the reports' executions (waiting for a pass that
        holds one) and reads the outcomes already waiting for them; then per execution the pass's
        ``decisions.write``, with new commands leased to the reporting worker up to ``take.limit``
        (the rest enqueued as ready). A report of an execution that is no longer running is kept
        for the server, which is notified. ``conn`` must be in autocommit mode (the usual pool
        connection), and each ``Report.execution_id`` set."""
        works: list[_Work] = []
        done = Recorded()
        wanted = sorted({r.execution_id for r in reports})
        try:
            async with conn.transaction():
                opened = await decisions.open(conn, wanted, reports, wait=True)
                done.accepted = opened.accepted
                locked = {r.execution_id for r in opened.rows}
                works = await self._decide_locked(
                    conn, opened.rows, opened.pending, take, done.leases, opened.recorded
                )
                left = {r.execution_id for r in reports if r.command_id in opened.accepted} - locked
                await commands.notify_results(conn, sorted(left))
        except BaseException:
            self._forget(wanted)
            raise
        for work in works:
            self._remember(work)
        return done

    async def _decide_locked(
        self,
        conn: Any,
        rows: list[ExecutionRow],
        pending: dict[int, list[PendingResult]],
        take: Take | None = None,
        taken: list[Lease] | None = None,
        recorded: set[str] | None = None,
    ) -> list[_Work]:
        works: list[_Work] = []
        budget = take.limit if take is not None else 0
        for row in rows:
            work = await self._collect(conn, row, pending.get(row.execution_id, []))
            if work is None:
                continue
            if recorded:
                work.recorded = [c for c in work.recorded if c not in recorded]
            works.append(work)
            leases = await self._write(conn, work, take, budget)
            if taken is not None:
                taken.extend(leases)
            budget -= len(leases)
        return works

    def _remember(self, work: _Work) -> None:
        execution_id = work.row.execution_id
        if work.state.terminal:
            self._states.pop(execution_id, None)
            return
        self._states[execution_id] = work.state
        self._states.move_to_end(execution_id)
        while len(self._states) > STATE_CACHE:
            self._states.popitem(last=False)

    def _forget(self, execution_ids: Iterable[int]) -> None:
        for execution_id in execution_ids:
            self._states.pop(execution_id, None)  # the cache may hold folds that never committed

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
        work.playbook = playbook
        for event in incoming:
            now = time.time()
            event = replace(event, id=state.last_event_id + 1, at=event.at or now)
            decision = advance(playbook, state, event, now, self.limits)
            work.events.append(event)
            work.events.extend(decision.events)
            work.commands.extend(decision.commands)

    async def _write(self, conn: Any, work: _Work, take: Take | None = None, budget: int = 0) -> list[Lease]:
        """Append the work's events, enqueue its commands (leasing up to ``budget`` of them to
        ``take.worker_id``), mark its outcomes recorded and move the projection forward."""
        row, state = work.row, work.state
        cancelled = {e.command_id for e in work.events if e.name == ev.COMMAND_CANCELLED}
        new = [self._queued(work, c) for c in work.commands if c.id not in cancelled]
        leases: list[Lease] = []
        if new and take is not None and budget > 0 and not state.terminal:
            mine = [c for c in new if c.pool in take.pools and not c.constrained][:budget]
            leases = [
                Lease(
                    c.command_id,
                    c.execution_id,
                    c.catalog_id,
                    c.step,
                    c.index,
                    1,
                    c.context,
                    c.pool,
                    c.priority,
                    c.max_attempts,
                )
                for c in mine
            ]
        projection = decisions.Projection(
            state.status, state.last_event_id, state.final_result, state.error, final=state.terminal
        )
        await decisions.write(
            conn,
            row.execution_id,
            work.events,
            new,
            work.recorded,
            projection,
            leased=frozenset(lease.command_id for lease in leases),
            worker_id=take.worker_id if take is not None else None,
            lease_seconds=take.lease_seconds if take is not None else 60.0,
        )
        if cancelled or state.status == "CANCELLED":
            await commands.cancel(conn, row.execution_id)
        if state.terminal and row.parent_execution_id is not None:
            await commands.wake_waiters(conn, [row.execution_id])  # the call waiting for this child
        return leases

    # -- waiting ----------------------------------------------------------------------------------

    async def suspend(
        self, conn: Any, lease: Lease, worker_id: str, wait: Mapping[str, Any], at: float
    ) -> str | None:
        """End the run of ``lease`` that waits for ``wait`` (``call.waiting``): the command holds no
        lease and no worker until what it waits for wakes it, then runs again.

        One transaction: the execution and the child it waits for are locked in id order (so the
        child's end, which wakes the waiting command in its own transaction, comes either before -
        the command is made ready at once - or after, and finds it waiting), the command row moves,
        and ``call.waiting`` is folded by the engine and appended. Returns the command's new status
        (``waiting`` or ``ready``), or None when the lease is no longer this worker's or the
        execution has ended (nothing changed). ``conn`` must be in autocommit mode."""
        child = _child_of(wait)
        work: _Work | None = None
        try:
            async with conn.transaction():
                locked = {
                    r.execution_id: r
                    for r in await executions.lock_waiting(conn, [lease.execution_id, *child])
                }
                row = locked.get(lease.execution_id)
                if row is None or row.status != "RUNNING":
                    return None
                ready = any(locked.get(c) is None or locked[c].status != "RUNNING" for c in child)
                seconds = wait.get("seconds")
                status = await commands.suspend(
                    conn,
                    worker_id,
                    lease.command_id,
                    lease.attempt,
                    wait=wait,
                    ready=ready,
                    seconds=float(seconds) if isinstance(seconds, int | float) else None,
                )
                if status is None:
                    return None
                work = _Work(row, await self._state(conn, row))
                data = {"index": lease.index, "wait": dict(wait), "resumed": status == "ready"}
                event = ev.Event(ev.CALL_WAITING, lease.step, lease.command_id, data, at)
                self._run(await self._playbook(conn, row.catalog_id), work, [event])
                await self._write(conn, work)
        except BaseException:
            self._forget([lease.execution_id])
            raise
        assert work is not None
        self._remember(work)
        return status

    def _queued(self, work: _Work, command: ev.Command) -> NewCommand:
        """The queue row of ``command``: pool, priority, key and needs by ``placement``."""
        row, playbook = work.row, work.playbook
        context = rctx.to_wire(dict(command.context))
        if playbook is None or command.step not in playbook.steps:
            return NewCommand(
                command.id, row.execution_id, row.catalog_id, command.step, command.index, context,
                priority=command.priority,
            )  # fmt: skip
        step = playbook.steps[command.step]
        key = placement.concurrency_key(step, command.context)
        return NewCommand(
            command_id=command.id,
            execution_id=row.execution_id,
            catalog_id=row.catalog_id,
            step=command.step,
            index=command.index,
            context=context,
            pool=placement.pool(playbook, step, self.kind_pools),
            priority=placement.priority(playbook, work.state.priority, command),
            concurrency_key=key,
            needs=placement.needs(playbook, step, key),
        )

    # -- state and playbooks ----------------------------------------------------------------------

    async def _state(self, conn: Any, row: ExecutionRow) -> State:
        """The execution's state as of ``row.last_event_id``: the cached fold, its tail folded on when
        another pass (a worker, another replica) moved the log on, or the whole log after a miss."""
        cached = self._states.get(row.execution_id)
        if cached is not None and cached.last_event_id == row.last_event_id:
            return cached
        if cached is not None and cached.last_event_id < row.last_event_id:
            state = fold(await event_log.read(conn, row.execution_id, after=cached.last_event_id), cached)
        else:
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
            self._keep(entry.catalog_id, playbook)
        return playbook

    def _keep(self, catalog_id: int, playbook: Playbook) -> None:
        self._playbooks[catalog_id] = playbook
        self._playbooks.move_to_end(catalog_id)
        while len(self._playbooks) > self._cache_size:
            self._playbooks.popitem(last=False)

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

        Notified executions are handled at once (those another pass holds locked are retried after
        ``RETRY_BUSY``: a worker recording its own report); every ``poll_interval`` without notifications, and
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
                        received = await notes.wait(RETRY_BUSY if self.busy else poll_interval)
                        ids = {int(p) for _, p in received if p.isdigit()} | self.busy
                        self.busy = set()
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


def _child_of(wait: Mapping[str, Any]) -> list[int]:
    """The child execution a wait is for (none for a wait on something else, e.g. a timer)."""
    value = wait.get("execution_id")
    if wait.get("kind") == "playbook" and value is not None and str(value).isdigit():
        return [int(str(value))]
    return []
