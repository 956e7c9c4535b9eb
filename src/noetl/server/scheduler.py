"""The scheduler: starts executions of schedules when they are due, on one server at a time.

Leadership works like the reaper's: a session advisory lock held on a dedicated connection. The
server that holds it checks every ``tick`` seconds for due schedules (``schedules.due``, rows
locked so that even two leaders could not start the same run twice), starts their executions and
moves ``next_run_at`` on. The others try for the lock every tick; when the leader's connection
breaks (the server died), PostgreSQL drops the lock and the next server to try takes over.

The leader also applies the retention setting (``NOETL_RETENTION``): once an hour it deletes the
executions that ended longer ago and that every export sink has (``noetl.store.prune``).

The leader also keeps the queue fair over time: every ``aging_seconds`` a ready command has waited
it gains one priority step (``backlog.age``), so low-priority work runs under sustained
high-priority load; and it forgets admissions of executions that ended.

When a schedule is due, its fire times between ``next_run_at`` and now are its due runs. Usually
there is one. After downtime (or a long pause in leadership) there may be many, and the
schedule's ``misfire`` policy decides: ``skip`` runs none of the missed ones (only a run that is
still within :data:`ON_TIME_SECONDS` of its time), ``run_once`` runs one for all of them,
``catch_up`` runs each, up to ``catch_up_limit`` (the latest ones). Schedules start from the time
they are added or resumed: time spent paused is not missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from psycopg_pool import PoolTimeout

from noetl.errors import NoetlError, UsageError
from noetl.store import backlog, catalog, db, prune, schedules
from noetl.store.db import Connection
from noetl.store.errors import translated
from noetl.store.schedules import Schedule

log = logging.getLogger("noetl.scheduler")

LEADER_LOCK_KEY = 0x6E6F65746C_0002
"""Fixed advisory lock key of the scheduler leader ("noetl" in ASCII + 2; the reaper's is + 1)."""
ON_TIME_SECONDS = 30.0
"""A fire time at most this old is on time; older ones are missed (see the misfire policies)."""
MAX_FIRE_TIMES = 10_000
"""Fire times looked at per due schedule (bounds the work after very long downtime)."""
MAX_BACKOFF_SECONDS = 30.0
PRUNE_EVERY_SECONDS = 3600.0
"""How often the leader applies the retention setting."""


# ---- timing (pure) ------------------------------------------------------------------------------


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"unknown timezone {name!r} (use an IANA name such as 'Europe/Berlin')") from None


def check_cron(expression: str) -> str:
    """``expression`` if croniter reads it (5 fields, or 6 with seconds last); UsageError otherwise."""
    from croniter import croniter

    if not croniter.is_valid(expression):
        raise UsageError(
            f"invalid cron expression {expression!r}: expected 5 fields (minute hour day month weekday), "
            "or 6 with seconds last"
        )
    return expression


def next_after(cron: str | None, interval: float | None, tz: str, moment: datetime) -> datetime:
    """The first fire time strictly after ``moment``."""
    if interval is not None:
        return moment + timedelta(seconds=interval)
    from croniter import croniter

    assert cron is not None, "a schedule has a cron expression or an interval"
    local = moment.astimezone(zone(tz))
    found: datetime = croniter(cron, local).get_next(datetime)
    return found.astimezone(UTC)


def fire_times(schedule: Schedule, now: datetime) -> Iterator[datetime]:
    """The schedule's fire times from ``next_run_at`` up to ``now`` (at most :data:`MAX_FIRE_TIMES`)."""
    moment = schedule.next_run_at
    for _ in range(MAX_FIRE_TIMES):
        if moment > now:
            return
        yield moment
        moment = next_after(schedule.cron, schedule.interval_seconds, schedule.timezone, moment)


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do with a due schedule: the runs to start (their fire times) and the next fire time."""

    runs: list[datetime]
    next_run_at: datetime


def plan(schedule: Schedule, now: datetime) -> Plan:
    """Apply the misfire policy to the due fire times of ``schedule`` at ``now``."""
    due = list(fire_times(schedule, now))
    after = due[-1] if due else schedule.next_run_at
    following = next_after(schedule.cron, schedule.interval_seconds, schedule.timezone, after)
    while following <= now:  # more than MAX_FIRE_TIMES were due: jump ahead
        following = next_after(schedule.cron, schedule.interval_seconds, schedule.timezone, now)
    if not due:
        return Plan([], schedule.next_run_at)
    on_time = [t for t in due if (now - t).total_seconds() <= ON_TIME_SECONDS]
    if schedule.misfire == "catch_up":
        runs = due[-schedule.catch_up_limit :]
    elif schedule.misfire == "run_once":
        runs = due[-1:]
    else:  # skip
        runs = on_time[-1:]
    return Plan(runs, following)


# ---- the leader ---------------------------------------------------------------------------------


class Scheduler:
    """The scheduler task of one server (``run``); ``leader`` says whether it leads right now."""

    def __init__(
        self, context: Any, *, tick: float = 1.0, aging_seconds: float = 30.0, retention: float = 0.0
    ) -> None:
        self.context = context
        """The ServerContext: database URL, pool and orchestrator."""
        self.tick = tick
        self.aging_seconds = aging_seconds
        self.retention = retention
        """Seconds an ended execution is kept (0: forever)."""
        self._pruned_at = -PRUNE_EVERY_SECONDS
        self.leader = False
        self._aged_at = time.monotonic()

    async def run(self, stop: asyncio.Event) -> None:
        """Lead when possible until ``stop`` is set; survives lost connections."""
        backoff = min(self.tick, 1.0)
        while not stop.is_set():
            try:
                conn = await db.connect(self.context.database_url)
            except NoetlError as exc:
                log.warning("scheduler cannot connect (%s); retrying in %.1fs", exc, backoff)
                await _wait(stop, backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            backoff = min(self.tick, 1.0)
            try:
                await self._lead(conn, stop)
            except NoetlError as exc:
                log.warning("scheduler lost its connection (%s); reconnecting", exc)
            except PoolTimeout as exc:  # every pooled connection busy: a moment of overload, not a bug
                log.warning("scheduler could not get a database connection (%s); retrying", exc)
                await _wait(stop, self.tick)
            except Exception:
                log.exception("scheduler failed; restarting it")
                await _wait(stop, self.tick)
            finally:
                self.leader = False
                await conn.close()

    async def _lead(self, conn: Connection, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self.leader:
                await _alive(conn)  # a broken session has lost the lock: find out now
            else:
                self.leader = await _try_lock(conn)
                if self.leader:
                    log.info("scheduler: this server leads")
            if self.leader:
                await self.fire_due()
                await self._upkeep()
            await _wait(stop, self.tick)

    async def fire_due(self, now: datetime | None = None) -> int:
        """Start the runs of every due schedule and move them on; returns how many runs started."""
        now = now or datetime.now(UTC)
        started = 0
        async with self.context.pool.connection() as conn, conn.transaction():
            for schedule in await schedules.due(conn, now):
                started += await self._fire(conn, schedule, plan(schedule, now))
        return started

    async def _fire(self, conn: Connection, schedule: Schedule, todo: Plan) -> int:
        last_id: int | None = None
        entry = await catalog.get(conn, path=schedule.path) if todo.runs else None
        if todo.runs and entry is None:
            log.warning(
                "schedule %s: playbook %s is not in the catalog; run skipped", schedule.name, schedule.path
            )
        for _ in todo.runs if entry is not None else ():
            last_id = await self.context.orchestrator.start(entry, dict(schedule.payload))
        ran = len(todo.runs) if last_id is not None else 0
        if ran:
            log.info("schedule %s: started %d run(s), last execution %s", schedule.name, ran, last_id)
        await schedules.advance(
            conn,
            schedule.name,
            todo.next_run_at,
            last_run_at=todo.runs[-1] if ran else None,
            last_execution_id=last_id,
            runs=ran,
        )
        return ran

    async def _retain(self) -> None:
        if self.retention <= 0 or time.monotonic() - self._pruned_at < PRUNE_EVERY_SECONDS:
            return
        self._pruned_at = time.monotonic()
        cutoff = datetime.now(UTC) - timedelta(seconds=self.retention)
        async with self.context.pool.connection() as conn:
            found = await prune.prune(conn, cutoff)
        if found.executions or found.held_for_export:
            log.info(
                "retention: deleted %d executions that ended before %s (%d events); %d kept for export",
                found.executions,
                cutoff.isoformat(),
                found.events,
                found.held_for_export,
            )

    async def _upkeep(self) -> None:
        await self._retain()
        if self.aging_seconds <= 0 or time.monotonic() - self._aged_at < self.aging_seconds / 2:
            return
        self._aged_at = time.monotonic()
        async with self.context.pool.connection() as conn:
            await backlog.age(conn, self.aging_seconds)
            await backlog.prune_admissions(conn)


async def _try_lock(conn: Connection) -> bool:
    with translated("taking the scheduler lock"):
        cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK_KEY,))
        row = await cursor.fetchone()
    return bool(row and row[0])


async def _alive(conn: Connection) -> None:
    with translated("checking the scheduler's connection"):
        await conn.execute("SELECT 1")


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
