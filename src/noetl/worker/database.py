"""The worker's way to PostgreSQL: a small pool, and operations retried across connection loss.

A worker must survive the database going away (a restart, a failover, a network cut): every
operation runs in its own short transaction through :meth:`Database.run`, which retries on
connection errors with capped exponential backoff (0.1 s doubling to 5 s). Work stays safe to
retry because each operation is one transaction that either committed or did not (a report is
idempotent on ``(command_id, attempt)``), and nothing is held between operations except the
pool's idle connections, which the pool replaces when they turn out to be dead.

Errors that are not about the connection (a bug, a constraint violation) are not retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TYPE_CHECKING, Final, TypeVar

from noetl.errors import NoetlError

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from noetl.store.db import Connection

T = TypeVar("T")

FIRST_DELAY: Final = 0.1
MAX_DELAY: Final = 5.0
POOL_TIMEOUT: Final = 10.0
"""Seconds to wait for a pooled connection before treating the database as unreachable."""

log = logging.getLogger("noetl.worker")


class DatabaseUnavailable(NoetlError):
    """The database could not be reached before the caller's deadline (or it gave up waiting)."""

    @property
    def kind(self) -> str:
        return "database"


def is_connection_error(exc: BaseException) -> bool:
    """True for errors that a new connection may cure: lost connections, shutdowns, pool timeouts."""
    import psycopg

    from noetl.store.errors import StoreUnavailable

    return isinstance(exc, StoreUnavailable | psycopg.OperationalError | psycopg.InterfaceError)


class Backoff:
    """Delays 0.1 s, 0.2 s, 0.4 s ... capped at 5 s; :meth:`reset` after a success."""

    __slots__ = ("delay",)

    def __init__(self) -> None:
        self.delay = FIRST_DELAY

    def next(self) -> float:
        delay = self.delay
        self.delay = min(self.delay * 2, MAX_DELAY)
        return delay

    def reset(self) -> None:
        self.delay = FIRST_DELAY


class Database:
    """A connection pool opened lazily, and :meth:`run` that retries connection errors."""

    def __init__(self, url: str, *, max_size: int) -> None:
        self.url = url
        self.max_size = max_size
        self._pool: AsyncConnectionPool[Connection] | None = None

    @property
    def pool(self) -> AsyncConnectionPool[Connection]:
        if self._pool is None:
            raise RuntimeError("the worker's database pool is not open")
        return self._pool

    async def open(self, give_up: asyncio.Event) -> None:
        """Open the pool, retrying while the database is unreachable (DatabaseUnavailable on ``give_up``)."""
        backoff = Backoff()
        while self._pool is None:
            try:
                self._pool = await self._open_pool(give_up)
            except Exception as exc:
                if not is_connection_error(exc):
                    raise
                delay = backoff.next()
                log.warning("database unreachable (%s); retrying in %.1f s", exc, delay)
                if await _wait(give_up, delay):
                    raise DatabaseUnavailable("gave up waiting for the database") from exc

    async def _open_pool(self, give_up: asyncio.Event) -> AsyncConnectionPool[Connection]:
        """One attempt to open the pool, abandoned as soon as ``give_up`` is set."""
        from noetl.store import db

        opening = asyncio.create_task(db.pool(self.url, 1, self.max_size, timeout=POOL_TIMEOUT))
        stopping = asyncio.create_task(give_up.wait())
        await asyncio.wait({opening, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not opening.done():
            opening.cancel()
            await asyncio.gather(opening, return_exceptions=True)
            raise DatabaseUnavailable("gave up waiting for the database")
        return opening.result()

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def run(
        self,
        what: str,
        operation: Callable[[Connection], Awaitable[T]],
        *,
        deadline: float | None = None,
        give_up: asyncio.Event | None = None,
        transaction: bool = False,
    ) -> T:
        """``operation(conn)``, retried on connection errors; in one transaction if ``transaction``.

        Connections are in autocommit mode, so a single statement needs no transaction (and saves
        two round trips). Raises :class:`DatabaseUnavailable` when the loop clock passes
        ``deadline`` or ``give_up`` is set while waiting to retry; other errors propagate at once.
        """
        loop = asyncio.get_running_loop()
        backoff = Backoff()
        while True:
            try:
                async with self.pool.connection() as conn:
                    if not transaction:
                        return await operation(conn)
                    async with conn.transaction():
                        return await operation(conn)
            except Exception as exc:
                if not is_connection_error(exc):
                    raise
                delay = backoff.next()
                if deadline is not None and loop.time() + delay > deadline:
                    raise DatabaseUnavailable(f"{what}: the database is unreachable ({exc})") from exc
                log.warning("database unreachable during %s (%s); retrying in %.1f s", what, exc, delay)
            if give_up is None:
                await asyncio.sleep(delay)
            elif await _wait(give_up, delay):
                raise DatabaseUnavailable(f"{what}: gave up waiting for the database")

    async def notifications_on(
        self, channels: list[str], give_up: asyncio.Event
    ) -> AsyncGenerator[tuple[str, str], None]:
        """``(channel, payload)`` of NOTIFY on ``channels`` over one connection, reconnecting with
        backoff; yields ``("", "")`` after each (re)connection, which tells the caller that
        notifications may have been missed while the connection was down."""
        from noetl.store import db

        channel = ",".join(channels)
        backoff = Backoff()
        while not give_up.is_set():
            try:
                async with db.listen(self.url, channels) as notes:
                    yield "", ""  # subscribed: anything sent from now on arrives below
                    backoff.reset()
                    async for note in notes:
                        yield note
                reason = "the connection closed"
            except Exception as exc:
                if not is_connection_error(exc):
                    raise
                reason = str(exc)
            delay = backoff.next()
            log.warning("LISTEN %s lost (%s); reconnecting in %.1f s", channel, reason, delay)
            await _wait(give_up, delay)


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``event``; True if it was set."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        return False
    return True
