"""The worker process: lease commands from the PostgreSQL queue, run them, report their outcomes.

A worker is stateless and pull-based; it shares nothing with other workers but the database, and
has no inbound port. Its life:

1. **Register** in the runtime table (name, pools, capacity, host, pid).
2. **Claim** up to the number of free slots in one statement (``commands.claim``), whenever a
   ``noetl_commands`` notification for one of its pools arrives, a slot frees up after the worker
   was full (notifications it had no room for, or a claim that filled every slot), or
   ``poll_seconds`` pass without either (the fallback for missed notifications and for commands
   whose ``available_at`` lies ahead). A slot is taken from claim until the report lands, so the
   queue never shows more leases for this worker than its concurrency.
3. **Decide** right after reporting (the fast path, ``decide`` setting): the reporter records the
   outcomes and runs the orchestrator's pass in the report's transaction for the executions whose
   lock is free, and the commands that decision produces are leased to this worker up to its free
   slots and run at once, with no claim round trip.
4. **Run** each lease as an asyncio task (:class:`~noetl.worker.command.CommandRunner`) and hand
   the outcome to the :class:`~noetl.worker.reporter.Reporter`, which records it in the queue. A
   run that waits for a sub-playbook is parked instead (``Orchestrator.suspend``): the slot frees
   at once and the command comes back through the queue when the child ends.
5. **Heartbeat** every ``heartbeat_seconds`` (5 s by default), and at once on a ``noetl_cancelled``
   notification naming this worker: extend the leases held, and stop the local task of any
   command the queue no longer leases to this worker (its execution was cancelled, or the lease
   expired and was reaped) - without reporting it. Stopping a task kills its process group.
6. **Stop** when ``stop`` is set (SIGTERM/SIGINT in :func:`main`): claim nothing more, let running
   commands finish for up to ``grace_seconds``, cancel the rest and release them to the queue (a
   release costs no attempt), send the last reports, deregister, close the pools.

Lost database connections are retried with capped exponential backoff
(:mod:`noetl.worker.database`); an outcome not yet reported stays pending and is sent after the
reconnect. Log lines carry ``execution_id``, ``step`` and ``command_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

from noetl.engine.decide import Limits
from noetl.errors import NoetlError
from noetl.runtime import placement
from noetl.runtime.orchestration import Orchestrator
from noetl.store.ports import Lease
from noetl.telemetry import logs, traces
from noetl.telemetry.metrics import Pusher, WorkerMetrics
from noetl.worker.children import Children
from noetl.worker.command import CommandRunner, failure, log_fields, report_of
from noetl.worker.credentials import StoreCredentials, cipher_from
from noetl.worker.database import Database, DatabaseUnavailable
from noetl.worker.playbooks import Playbooks
from noetl.worker.reporter import Reporter
from noetl.worker.settings import WorkerSettings, tool_extras

log = logging.getLogger("noetl.worker")

CLOSING_SECONDS: Final = 5.0
"""After the grace period: how long releasing, the last reports and deregistering may take."""


@dataclass(slots=True)
class _Slot:
    """One lease this worker holds, from claim until its report lands (or it is lost or released)."""

    lease: Lease
    task: asyncio.Task[None] | None = None
    lost: bool = False


class Worker:
    """One worker process's loop; see the module docstring. ``await Worker(settings).run(stop)``."""

    def __init__(self, settings: WorkerSettings) -> None:
        from noetl.tools.pypool import PythonPool
        from noetl.tools.sandbox import for_worker

        self.settings = settings
        self.sandbox, warning = for_worker(settings.task_user, settings.python_scope_depth)
        if warning:
            log.warning("%s", warning)
        self.database = Database(settings.database_url, max_size=min(settings.concurrency, 8) + 2)
        self.slots: dict[str, _Slot] = {}
        self._claiming = 0  # slots the claim in flight may fill
        self._behind = False  # ready commands may be waiting that we had no slot for
        self._stopping: asyncio.Event | None = None
        limits = Limits(inline_results=settings.inline_results)
        kind_pools = placement.kind_pools(settings.pools_by_kind)
        # its pool is set once the database opens
        self.orchestrator = Orchestrator(None, limits=limits, kind_pools=kind_pools)
        self.reporter = Reporter(
            self.database,
            settings.worker_id,
            self._settled,
            orchestrator=self.orchestrator if settings.decide else None,
            pools=frozenset(settings.pools),
            lease_seconds=settings.lease_seconds,
            budget=self._budget,
            started=self._started,
        )
        self.python_pool = PythonPool(
            size=settings.python_workers,
            spin_seconds=settings.python_spin_seconds,
            sandbox=self.sandbox,
            memory_mb=settings.python_memory_mb,
        )
        self.extras: dict[str, Any] = tool_extras(settings)
        self.metrics = WorkerMetrics()
        self.runner = CommandRunner(
            Playbooks(self.database),
            StoreCredentials(self.database, cipher_from(settings)),
            python_pool=self.python_pool,
            extras=self.extras,
            run_child=Children(self.database, self.orchestrator).run,
            sandbox=self.sandbox,
            metrics=self.metrics,
            trace_headers=self._trace_headers if settings.trace_propagation else None,
        )
        self.propagation = traces.Propagation()
        self._wake = asyncio.Event()
        self._beat_now = asyncio.Event()  # a cancel notification: heartbeat (and stop lost tasks) now
        self._registered = False

    async def _trace_headers(self, lease: Lease) -> dict[str, str]:
        headers = partial(
            self.propagation.headers, execution_id=lease.execution_id, command_id=lease.command_id
        )
        found: dict[str, str] = await self.database.run("reading the execution's trace", headers)
        return found

    @property
    def worker_id(self) -> str:
        return self.settings.worker_id

    async def run(self, stop: asyncio.Event, hurry: asyncio.Event | None = None) -> None:
        """Work until ``stop`` is set, then shut down gracefully (``hurry`` cuts the grace period short)."""
        background: list[asyncio.Task[None]] = []
        self._stopping = stop
        try:
            await self.database.open(give_up=stop)
            self.orchestrator.pool = self.database.pool
            await self._register(stop)
            background = [
                asyncio.create_task(self._listen(stop)),
                asyncio.create_task(self._heartbeats()),
                asyncio.create_task(self.reporter.run()),
                asyncio.create_task(self._wake_on(stop)),
            ]
            if self.settings.metrics_push_url:
                pusher = Pusher(
                    self.settings.metrics_push_url,
                    self.worker_id,
                    self.metrics,
                    interval=self.settings.metrics_push_interval,
                )
                background.append(asyncio.create_task(pusher.run(stop)))
            await self._claim_until(stop)
            await self._drain(hurry or asyncio.Event())
        except DatabaseUnavailable as exc:
            log.warning("worker %s stopping before the database answered: %s", self.worker_id, exc)
        finally:
            await self._cancel(background)
            await self._close()

    # ---- registration ------------------------------------------------------------------------------

    async def _register(self, stop: asyncio.Event) -> None:
        await self.database.run("registering the worker", self._registration, give_up=stop)
        self._registered = True
        settings = self.settings
        log.info(
            "worker %s started: pools=%s concurrency=%d lease=%gs",
            self.worker_id,
            ",".join(settings.pools),
            settings.concurrency,
            settings.lease_seconds,
            extra={"worker_id": self.worker_id},
        )

    async def _registration(self, conn: Any) -> None:
        from noetl.store import workers

        settings = self.settings
        meta = {
            "lease_seconds": settings.lease_seconds,
            "heartbeat_seconds": settings.heartbeat_interval,
            "resources": dict(settings.resources),
        }
        await workers.register(
            conn,
            settings.worker_id,
            settings.name,
            list(settings.pools),
            settings.concurrency,
            socket.gethostname(),
            os.getpid(),
            meta,
        )

    # ---- claiming ----------------------------------------------------------------------------------

    async def _claim_until(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._wake.clear()
            free = self.settings.concurrency - len(self.slots)
            self._behind = free <= 0  # woken while full: claim again as soon as a slot frees up
            if free > 0:
                self._claiming = free
                try:
                    leases = await self.database.run(
                        "claiming commands", partial(self._claim, limit=free), give_up=stop
                    )
                except DatabaseUnavailable:
                    return
                except Exception:
                    log.exception("claiming commands failed; retrying after the poll interval")
                    leases = []
                finally:
                    self._claiming = 0
                self._behind = len(leases) >= free  # a full claim: more may be waiting
                for lease in leases:
                    self._start(lease)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_seconds)

    async def _claim(self, conn: Any, *, limit: int) -> list[Lease]:
        from noetl.store import commands

        settings = self.settings
        with self.metrics.claim_seconds.time():
            return await commands.claim(
                conn, self.worker_id, list(settings.pools), limit, settings.lease_seconds, settings.resources
            )

    async def _listen(self, stop: asyncio.Event) -> None:
        """Wake the claim loop on ``noetl_commands`` for one of our pools, and the heartbeat on
        ``noetl_cancelled`` for this worker (it then stops the cancelled tasks at once), and both
        after each reconnect."""
        from noetl.store.db import CANCELLED_CHANNEL, COMMANDS_CHANNEL

        pools = set(self.settings.pools)
        channels = [COMMANDS_CHANNEL, CANCELLED_CHANNEL]
        try:
            async with contextlib.aclosing(self.database.notifications_on(channels, stop)) as notes:
                async for channel, payload in notes:
                    if channel != CANCELLED_CHANNEL and (not payload or payload in pools):
                        self._wake.set()
                    if channel != COMMANDS_CHANNEL and (not payload or payload == self.worker_id):
                        self._beat_now.set()
        except Exception:
            log.exception(
                "notifications unavailable; claiming every %g s instead", self.settings.poll_seconds
            )

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    # ---- running -----------------------------------------------------------------------------------

    def _start(self, lease: Lease) -> None:
        previous = self.slots.get(lease.command_id)
        if previous is not None:  # our older lease of it expired and was reaped; that run is void
            self._lose(previous)
        slot = _Slot(lease)
        self.slots[lease.command_id] = slot
        slot.task = asyncio.create_task(self._execute(slot), name=f"command {lease.command_id}")
        log.debug(
            "command leased execution_id=%s step=%s command_id=%s attempt=%d",
            lease.execution_id,
            lease.step,
            lease.command_id,
            lease.attempt,
            extra=log_fields(lease),
        )

    async def _execute(self, slot: _Slot) -> None:
        try:
            report = await self.runner.run(slot.lease)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the runner reports every problem itself; this is a last resort
            log.exception("command runner failed", extra=log_fields(slot.lease))
            report = report_of(slot.lease, failure("internal", f"{type(exc).__name__}: {exc}"))
        if report.wait is not None:
            await self._park(slot, report.wait)
        elif not slot.lost:
            self.reporter.submit(report)

    async def _park(self, slot: _Slot, wait: dict[str, Any]) -> None:
        """The run waits (a sub-playbook call): park the command in the queue, free the slot."""
        lease = slot.lease
        status = None
        if not slot.lost:
            try:
                status = await self.database.run(
                    "parking a waiting command",
                    lambda conn: self.orchestrator.suspend(conn, lease, self.worker_id, wait, time.time()),
                )
            except Exception:  # the lease expires and the command runs again: nothing is lost
                log.exception("could not park a waiting command", extra=log_fields(lease))
        if status is None and not slot.lost:
            log.warning("waiting command not parked (lease lost or execution ended)", extra=log_fields(lease))
        self._settled(lease)

    def _budget(self, reports: int) -> int:
        """Slots free once ``reports`` reports land, less those a claim in flight may fill; none
        while stopping (the decision's commands then go to the queue for the other workers)."""
        if self._stopping is not None and self._stopping.is_set():
            return 0
        return self.settings.concurrency - len(self.slots) - self._claiming + reports

    def _started(self, leases: list[Lease]) -> None:
        """Run the commands our report's decision leased to us (no claim round trip)."""
        for lease in leases:
            self._start(lease)

    def _settled(self, lease: Lease) -> None:
        """The report of ``lease`` landed or was dropped: its slot is free."""
        slot = self.slots.get(lease.command_id)
        if slot is not None and slot.lease.attempt == lease.attempt:
            del self.slots[lease.command_id]
            if self._behind:
                self._wake.set()

    def _lose(self, slot: _Slot) -> None:
        """The queue no longer leases ``slot`` to us: stop its task, drop its report, free the slot."""
        slot.lost = True
        self.metrics.leases_lost.inc()
        log.warning(
            "lease lost (execution cancelled or lease expired): stopping execution_id=%s step=%s "
            "command_id=%s attempt=%d",
            slot.lease.execution_id,
            slot.lease.step,
            slot.lease.command_id,
            slot.lease.attempt,
            extra=log_fields(slot.lease),
        )
        if slot.task is not None:
            slot.task.cancel()
        if not self.reporter.drop(slot.lease) and self.slots.get(slot.lease.command_id) is slot:
            del self.slots[slot.lease.command_id]
            self._wake.set()

    # ---- heartbeats --------------------------------------------------------------------------------

    async def _heartbeats(self) -> None:
        interval = self.settings.heartbeat_interval
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._beat_now.wait(), interval)
            self._beat_now.clear()
            held = dict(self.slots)
            try:
                lost = await self.database.run(
                    "heartbeat", partial(self._beat, command_ids=list(held)), deadline=loop.time() + interval
                )
            except DatabaseUnavailable as exc:
                log.warning("heartbeat skipped: %s", exc)
                continue
            except Exception:
                log.exception("heartbeat failed")
                continue
            for command_id in lost:
                slot = held.get(command_id)
                if slot is not None and self.slots.get(command_id) is slot:
                    self._lose(slot)

    async def _beat(self, conn: Any, *, command_ids: list[str]) -> set[str]:
        from noetl.store import commands, workers

        settings = self.settings
        lost: set[str] = set()
        if command_ids:
            lost = await commands.heartbeat(conn, self.worker_id, command_ids, settings.lease_seconds)
        report = None if settings.metrics_push_url else self.metrics.text()
        if not await workers.heartbeat(conn, self.worker_id, report):
            await self._registration(conn)  # removed from the registry (e.g. by an operator): rejoin
        return lost

    # ---- shutdown ----------------------------------------------------------------------------------

    async def _drain(self, hurry: asyncio.Event) -> None:
        """Grace period for running commands, then cancel and release the rest; send the last reports."""
        loop = asyncio.get_running_loop()
        grace_end = loop.time() + self.settings.grace_seconds
        running = self._running()
        if running:
            log.info(
                "worker %s stopping: waiting up to %gs for %d running command(s)",
                self.worker_id,
                self.settings.grace_seconds,
                len(running),
            )
            await _wait_tasks(running, grace_end - loop.time(), hurry)
        unfinished = [slot for slot in self.slots.values() if slot.task is not None and not slot.task.done()]
        for slot in unfinished:
            slot.task.cancel()  # type: ignore[union-attr]
        await asyncio.gather(*(slot.task for slot in unfinished if slot.task), return_exceptions=True)
        await self._release([slot for slot in unfinished if slot.task is not None and slot.task.cancelled()])
        if not await self.reporter.flush(max(grace_end, loop.time()) + CLOSING_SECONDS):
            log.error("worker %s stopped with unsent reports; their leases will expire", self.worker_id)

    def _running(self) -> list[asyncio.Task[None]]:
        return [slot.task for slot in self.slots.values() if slot.task is not None and not slot.task.done()]

    async def _release(self, slots: list[_Slot]) -> None:
        from noetl.store import commands

        slots = [slot for slot in slots if not slot.lost and self.slots.get(slot.lease.command_id) is slot]
        if not slots:
            return
        ids = [slot.lease.command_id for slot in slots]
        deadline = asyncio.get_running_loop().time() + CLOSING_SECONDS
        try:
            await self.database.run(
                "releasing commands",
                lambda conn: commands.release(conn, self.worker_id, ids),
                deadline=deadline,
            )
        except NoetlError as exc:
            log.error("could not release %d command(s); their leases will expire: %s", len(ids), exc)
        else:
            for slot in slots:
                log.info("command released", extra=log_fields(slot.lease))
        for command_id in ids:
            self.slots.pop(command_id, None)

    async def _cancel(self, tasks: list[asyncio.Task[None]]) -> None:
        for task in tasks:
            task.cancel()
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, Exception):
                log.error("worker background task failed: %s: %s", type(result).__name__, result)

    async def _close(self) -> None:
        from noetl.store import workers

        if self._registered:
            deadline = asyncio.get_running_loop().time() + CLOSING_SECONDS
            try:
                await self.database.run(
                    "deregistering", lambda conn: workers.deregister(conn, self.worker_id), deadline=deadline
                )
            except NoetlError as exc:
                log.error("could not deregister worker %s: %s", self.worker_id, exc)
        await self.python_pool.close()
        for value in list(self.extras.values()):
            closer = getattr(value, "aclose", None)
            if closer is not None:
                await closer()
        self.extras.clear()
        await self.database.close()
        log.info("worker %s stopped", self.worker_id, extra={"worker_id": self.worker_id})


async def _wait_tasks(tasks: list[asyncio.Task[None]], seconds: float, hurry: asyncio.Event) -> None:
    """Wait until ``tasks`` are done, ``seconds`` pass, or ``hurry`` is set."""
    hurried = asyncio.create_task(hurry.wait())
    pending: set[asyncio.Task[Any]] = set(tasks)
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    try:
        while pending and not hurry.is_set() and (remaining := end - loop.time()) > 0:
            _, pending = await asyncio.wait(
                pending | {hurried}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            pending.discard(hurried)
    finally:
        hurried.cancel()


async def run_worker(
    settings: WorkerSettings, stop: asyncio.Event, hurry: asyncio.Event | None = None
) -> None:
    """Run a worker until ``stop`` is set; returns after a graceful shutdown."""
    await Worker(settings).run(stop, hurry)


def main(settings: WorkerSettings) -> int:
    """Run a worker in this process until SIGTERM or SIGINT (a second one skips the grace period)."""
    if settings.log_format == "json":
        logs.configure("info", "json")
    elif not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for name in ("httpx", "httpcore"):  # their INFO lines carry full URLs, secrets in queries included
        logging.getLogger(name).setLevel(logging.WARNING)

    async def serve() -> None:
        stop, hurry = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            (hurry if stop.is_set() else stop).set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal)
        await run_worker(settings, stop, hurry)

    try:
        asyncio.run(serve())
    except NoetlError as exc:
        log.error("worker failed: %s", exc)
        return 1
    return 0


__all__ = ["Worker", "main", "run_worker"]
