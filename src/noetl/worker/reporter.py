"""Reporting finished commands to the queue: batched, retried until they land, never doubled.

Outcomes that finish together go out in one transaction (one commit for many commands). A
report that meets a lost connection stays pending and is sent again once the database answers;
``commands.report`` only accepts it while this worker still holds that lease and attempt, so a
retried report is recorded at most once. A report the queue refuses (the lease was lost: the
execution was cancelled, or the lease expired and another worker took the command) is dropped.

A report that fails for another reason (a value the database rejects) is replaced by a failed
outcome saying so, so that the execution does not wait for a lease to expire.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from noetl.store.ports import Lease
from noetl.worker.command import Finished, failure, log_fields, report_of
from noetl.worker.database import Database, DatabaseUnavailable, is_connection_error

if TYPE_CHECKING:
    from noetl.runtime.orchestration import Orchestrator

log = logging.getLogger("noetl.worker")

Settled = Callable[[Lease], None]
"""Called with the lease once its report landed or was dropped (its slot is free again)."""

Started = Callable[[list[Lease]], None]
"""Called with the commands a report's decision leased to this worker (after the batch settled)."""

Budget = Callable[[int], int]
"""How many new commands this worker may lease to itself when a batch of this many reports lands."""


class Reporter:
    """Collects reports and sends them in batches from one background task (:meth:`run`)."""

    def __init__(
        self,
        database: Database,
        worker_id: str,
        settled: Settled,
        *,
        orchestrator: Orchestrator | None = None,
        pools: frozenset[str] = frozenset(),
        lease_seconds: float = 60.0,
        budget: Budget | None = None,
        started: Started | None = None,
    ) -> None:
        self._database = database
        self._worker_id = worker_id
        self._settled = settled
        self._orchestrator = orchestrator
        self._pools = pools
        self._lease_seconds = lease_seconds
        self._budget = budget
        self._started = started
        self._taken: list[Lease] = []
        self._pending: dict[str, Finished] = {}
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._deadline: float | None = None

    def submit(self, report: Finished) -> None:
        self._pending[report.lease.command_id] = report
        self._idle.clear()
        self._ready.set()

    def drop(self, lease: Lease) -> bool:
        """Forget the pending report of ``lease`` (known lost); True if there was one."""
        report = self._pending.get(lease.command_id)
        if report is None or report.lease.attempt != lease.attempt:
            return False
        del self._pending[lease.command_id]
        self._settled(lease)
        self._mark_idle()
        return True

    async def flush(self, deadline: float) -> bool:
        """Wait until every pending report is sent, giving up at ``deadline`` (loop clock)."""
        self._deadline = deadline  # from now on a report that cannot get through is given up at the deadline
        self._ready.set()
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            await asyncio.wait_for(self._idle.wait(), max(remaining, 0.0))
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        """Send pending reports until cancelled."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            batch = list(self._pending.values())
            if not batch:
                self._mark_idle()
                continue
            try:
                accepted = await self._database.run(
                    f"reporting {len(batch)} command(s)",
                    partial(self._report_all, batch=batch),
                    deadline=self._deadline,
                )
            except DatabaseUnavailable as exc:
                log.error("could not report %d command(s) before the deadline: %s", len(batch), exc)
                self._give_up(batch)
                continue
            except Exception as exc:
                log.warning("batched report failed (%s: %s); reporting one by one", type(exc).__name__, exc)
                accepted = [await self._report_alone(report) for report in batch]
            self._done(batch, accepted)
            taken, self._taken = self._taken, []
            if taken and self._started is not None:
                self._started(taken)

    async def _report_all(self, conn: Any, *, batch: list[Finished]) -> list[bool]:
        """Record and decide in the report's transaction (:meth:`Orchestrator.record`) when this
        worker has an orchestrator; else (or if that fails for a reason other than the connection)
        one statement: ``report`` for one, ``report_many`` for a batch, and the server decides."""
        from noetl.store import commands
        from noetl.store.ports import Report

        if self._orchestrator is not None:
            try:
                return await self._record(conn, batch)
            except Exception as exc:
                if is_connection_error(exc):
                    raise
                log.exception("recording the outcomes here failed; leaving the decision to the server")
        if len(batch) == 1:
            lease = batch[0].lease
            return [
                await commands.report(
                    conn, self._worker_id, lease.command_id, lease.attempt, batch[0].ok, batch[0].events
                )
            ]
        reports = [
            Report(self._worker_id, f.lease.command_id, f.lease.attempt, f.ok, f.events) for f in batch
        ]
        accepted = await commands.report_many(conn, reports)
        return [f.lease.command_id in accepted for f in batch]

    async def _record(self, conn: Any, batch: list[Finished]) -> list[bool]:
        from noetl.runtime.orchestration import Take
        from noetl.store.ports import Report

        assert self._orchestrator is not None
        reports = [
            Report(self._worker_id, f.lease.command_id, f.lease.attempt, f.ok, f.events, f.lease.execution_id)
            for f in batch
        ]
        limit = self._budget(len(batch)) if self._budget is not None else 0
        take = Take(self._worker_id, self._pools, limit, self._lease_seconds) if limit > 0 else None
        recorded = await self._orchestrator.record(conn, reports, take)
        self._taken.extend(recorded.leases)
        return [f.lease.command_id in recorded.accepted for f in batch]

    async def _report_alone(self, report: Finished) -> bool:
        """One report in its own transaction; if the database rejects it, a failure saying why."""
        try:
            return await self._send(report)
        except DatabaseUnavailable:
            return False
        except Exception as exc:
            log.exception(
                "the outcome could not be stored; reporting a failure", extra=log_fields(report.lease)
            )
            replacement = _unstorable(report, f"{type(exc).__name__}: {exc}")
        try:
            return await self._send(replacement)
        except Exception:
            log.exception("dropping the report; the lease will expire", extra=log_fields(report.lease))
            return False

    async def _send(self, report: Finished) -> bool:
        accepted = await self._database.run(
            "reporting a command", partial(self._report_all, batch=[report]), deadline=self._deadline
        )
        return accepted[0]

    def _done(self, batch: list[Finished], accepted: list[bool]) -> None:
        for report, ok in zip(batch, accepted, strict=True):
            if self._pending.get(report.lease.command_id) is not report:
                continue  # dropped (lease lost) while the batch was in flight
            del self._pending[report.lease.command_id]
            if not ok:
                log.warning(
                    "report refused: the lease was lost (cancelled or expired); outcome dropped",
                    extra=log_fields(report.lease),
                )
            self._settled(report.lease)
        self._mark_idle()
        if self._pending:
            self._ready.set()

    def _give_up(self, batch: list[Finished]) -> None:
        for report in batch:
            if self._pending.pop(report.lease.command_id, None) is not None:
                self._settled(report.lease)
        self._mark_idle()

    def _mark_idle(self) -> None:
        if not self._pending:
            self._idle.set()


def _unstorable(report: Finished, reason: str) -> Finished:
    """A failed outcome for a command whose real outcome the database would not store."""
    return report_of(
        report.lease, failure("internal", f"the command's outcome could not be stored: {reason}")
    )
