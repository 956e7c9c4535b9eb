"""The lease reaper: expired leases go back to the queue, or fail after their last attempt.

The same sweep wakes waiting commands whose wait timed out (``commands.wake_due``).

Only one server reaps at a time. Leadership is a session advisory lock held on a dedicated
connection: the server that gets it reaps every ``interval`` seconds; the others try again each
interval. When the leader's connection breaks, PostgreSQL drops its lock and another server takes
over; the old leader reconnects with backoff and competes again. The reaping itself
(``commands.reap``) is one statement, so two reapers would not double anything either; the lock
only saves work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from noetl.errors import NoetlError
from noetl.store import commands, db
from noetl.store.db import Connection
from noetl.store.errors import translated

log = logging.getLogger("noetl.reaper")

# An arbitrary, fixed key ("noetl" in ASCII + 1) that no other NoETL lock uses.
LEADER_LOCK_KEY = 0x6E6F65746C_0001
MAX_BACKOFF_SECONDS = 30.0


async def run(url: str, stop: asyncio.Event, interval: float = 5.0) -> None:
    """Reap while this server leads, until ``stop`` is set; survives lost connections."""
    backoff = min(interval, 1.0)
    while not stop.is_set():
        try:
            conn = await db.connect(url)
        except NoetlError as exc:
            log.warning("reaper cannot connect (%s); retrying in %.1fs", exc, backoff)
            await _wait(stop, backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            continue
        backoff = min(interval, 1.0)
        try:
            await _lead(conn, stop, interval)
        except NoetlError as exc:
            log.warning("reaper lost its connection (%s); reconnecting", exc)
        except Exception:
            log.exception("reaper failed; restarting it")
            await _wait(stop, interval)
        finally:
            await conn.close()


async def _lead(conn: Connection, stop: asyncio.Event, interval: float) -> None:
    leader = False
    while not stop.is_set():
        if not leader:
            leader = await try_lead(conn)
        if leader:
            reaped = await reap_once(conn)
            if reaped:
                log.info("reaper: %d expired lease(s) requeued or failed", reaped)
        await _wait(stop, interval)


async def try_lead(conn: Connection) -> bool:
    """Take the reaper's leadership lock on ``conn`` if no other session holds it."""
    with translated("taking the reaper lock"):
        cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK_KEY,))
        row = await cursor.fetchone()
    return bool(row and row[0])


async def reap_once(conn: Connection) -> int:
    # BEGIN and COMMIT are driver calls outside the store function: translate them as well, so a
    # connection that broke between two reaps reads as a lost connection (reconnect), not a crash.
    with translated("reaping expired leases"):
        async with conn.transaction():
            reaped = await commands.reap(conn)
        async with conn.transaction():
            return reaped + await commands.wake_due(conn)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` or until ``stop`` is set, whichever comes first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
