"""Connections to PostgreSQL: single connections, pools, and LISTEN channels.

Connections are in autocommit mode. Every store function is one statement, so a claim or a
report costs one round trip; group several in ``async with conn.transaction():`` when they must
commit together (the orchestrator's decision, ARCHITECTURE invariant 2). Notifications sent inside
a transaction are delivered when it commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing, asynccontextmanager
from types import TracebackType
from typing import Any, TypeAlias

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from noetl.store.errors import StoreError, translated

Connection: TypeAlias = psycopg.AsyncConnection[Any]
"""Any psycopg async connection; store functions choose their own row factory per cursor."""

COMMANDS_CHANNEL = "noetl_commands"
"""Payload: a pool name. Sent once per committed batch of commands that became ready in that pool."""
RESULTS_CHANNEL = "noetl_results"
"""Payload: an execution id. Sent when an execution needs an orchestration pass."""
CANCELLED_CHANNEL = "noetl_cancelled"
"""Payload: a worker id. Sent when commands that worker holds were cancelled (it stops their tasks)."""


async def connect(url: str, *, autocommit: bool = True) -> Connection:
    """One open connection (autocommit unless asked otherwise); the caller closes it."""
    with translated(f"connecting to {redact(url)}"):
        return await psycopg.AsyncConnection.connect(url, autocommit=autocommit)


async def pool(
    url: str,
    min_size: int = 1,
    max_size: int = 10,
    *,
    timeout: float = 30.0,
    open_timeout: float | None = None,
) -> AsyncConnectionPool[Connection]:
    """An opened pool of autocommit connections; close it with ``await pool.close()``.

    ``timeout``: how long taking a connection may wait (then ``PoolTimeout``); ``open_timeout``
    (default ``timeout``): how long opening the pool may wait for the database."""
    opened: AsyncConnectionPool[Connection] = AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        kwargs={"autocommit": True},
        open=False,
        name="noetl",
        check=(check := StaleConnectionCheck()),
    )
    check.pool = opened
    try:
        with translated(f"opening a pool to {redact(url)}"):
            await opened.open(wait=True, timeout=open_timeout if open_timeout is not None else timeout)
    except BaseException:
        await opened.close()
        raise
    return opened


class StaleConnectionCheck:
    """The pool's check before it hands out a connection: a poll of the socket, no round trip.

    An idle connection has nothing to read unless the server ended it (a restart, a failover,
    ``pg_terminate_backend``). Then one empty query lets psycopg see the error and raise, so the pool
    replaces the connection instead of failing its user's first statement; and since the others
    idling beside it are most likely dead too, the whole pool is checked at once in the background
    (the pool waits a second, then longer, before each further retry of a failed check).
    """

    def __init__(self) -> None:
        self.pool: AsyncConnectionPool[Connection] | None = None
        self._sweep: asyncio.Task[None] | None = None

    async def __call__(self, conn: Connection) -> None:
        if not _readable(conn.pgconn.socket):
            return
        if self.pool is not None and (self._sweep is None or self._sweep.done()):
            self._sweep = asyncio.create_task(self._check_all(self.pool))
        await conn.execute("")

    @staticmethod
    async def _check_all(pool: AsyncConnectionPool[Connection]) -> None:
        with contextlib.suppress(Exception):  # best effort: a dead connection still fails its own check
            await pool.check()


def _readable(fd: int) -> bool:
    """True if the socket has data or an end-of-file to read, without blocking."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])


def listen(url: str, channels: Sequence[str]) -> Listener:
    """Notifications on ``channels`` over a dedicated connection.

    ``async with listen(url, [...]) as notes`` subscribes before the block runs (nothing sent after
    that is missed); iterating ``async for channel, payload in notes`` subscribes on first use.
    """
    return Listener(url, channels)


class Listener:
    """A dedicated autocommit connection LISTENing on some channels; yields ``(channel, payload)``."""

    def __init__(self, url: str, channels: Sequence[str]) -> None:
        self.url = url
        self.channels = tuple(channels)
        self._conn: Connection | None = None

    async def start(self) -> None:
        """Connect and subscribe (idempotent)."""
        if self._conn is not None:
            return
        conn = await connect(self.url)
        with translated("subscribing to notifications"):
            for channel in self.channels:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        self._conn = conn

    async def wait(self, timeout: float) -> list[tuple[str, str]]:
        """Notifications within ``timeout`` seconds: returns as soon as some arrive (with any others
        already received), or an empty list when the time is up (the polling fallback's tick)."""
        conn = await self._connection()
        received: list[tuple[str, str]] = []
        async with self._dropping_on_error(), aclosing(conn.notifies(timeout=timeout, stop_after=1)) as notes:
            async for note in notes:
                received.append((note.channel, note.payload))
        return received

    async def close(self) -> None:
        """Close the connection (idempotent); a later call subscribes again on a new one."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    async def __aenter__(self) -> Listener:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __aiter__(self) -> AsyncGenerator[tuple[str, str], None]:
        return self._iterate()

    async def _iterate(self) -> AsyncGenerator[tuple[str, str], None]:
        conn = await self._connection()
        async with self._dropping_on_error(), aclosing(conn.notifies()) as notes:
            async for note in notes:
                yield note.channel, note.payload

    async def _connection(self) -> Connection:
        await self.start()
        assert self._conn is not None
        return self._conn

    @asynccontextmanager
    async def _dropping_on_error(self) -> AsyncIterator[None]:
        """Translate driver errors, and forget a broken connection so the next call reconnects
        (notifications sent in between are lost: callers poll once after an error)."""
        try:
            with translated("waiting for notifications"):
                yield
        except StoreError:
            await self.close()
            raise


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparseable database URL>"
    if "password" in parts:
        parts["password"] = "***"
    return make_conninfo("", **parts)
