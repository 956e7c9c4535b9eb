"""Live feeds for the web UI, as server-sent events: one execution's new events, and list changes.

Both read only what changed since a cursor and share one poller among all the watchers:

* :class:`ExecutionFeeds` - per watched execution, one task reads the execution row (primary key)
  every ``interval`` and, when its ``last_event_id`` moved, the events after the feed's cursor
  (primary key range). Each batch is encoded once and handed to every subscriber; a subscriber that
  joins behind the feed, or falls behind (its queue full), reads the gap itself from the log.
* :class:`ListFeed` - one task for the whole process reads the running executions, those newer
  than the newest it has seen, and those that were running at its last poll (index scans whose
  cost follows the running set), and hands the summaries that changed to every subscriber, which
  keeps those its filters match.

Nothing here folds a log: a page loads its snapshot once and then applies the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from psycopg_pool import AsyncConnectionPool

from noetl.engine.events import Event
from noetl.server import views
from noetl.store import browse, events, executions
from noetl.store.db import Connection
from noetl.store.ports import ExecutionRow

log = logging.getLogger("noetl.server.live")

TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
BATCH = 1000
QUEUE = 256
KEEPALIVE_SECONDS = 15.0
DATA_PREVIEW = 4096
"""A streamed event's ``data`` longer than this (as JSON) is cut to a preview (the log API has it whole)."""


def sse(event: str, data: str, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {data}\n\n".encode()


def encode_event(execution_id: int, event: Event) -> str:
    """One event as the UI's JSON, its data cut to a preview when large."""
    out = event.to_dict(str(execution_id))
    data = json.dumps(out["data"], default=str, separators=(",", ":"))
    if len(data) > DATA_PREVIEW:
        cut: dict[str, Any] = {"_truncated": True, "_size": len(data), "preview": data[:DATA_PREVIEW]}
        loop = event.data.get("loop")
        if isinstance(loop, dict) and isinstance(loop.get("items"), list):
            cut["loop_size"] = len(loop["items"])  # the page's loop node counts against it
        out["data"] = cut
    return json.dumps(out, default=str, separators=(",", ":"))


@dataclass
class _Batch:
    ids: list[int]
    parts: list[str]
    status: str


@dataclass
class _Subscriber:
    queue: asyncio.Queue[_Batch | None] = field(default_factory=lambda: asyncio.Queue(QUEUE))
    lagged: bool = False


@dataclass
class _Feed:
    execution_id: int
    cursor: int
    status: str = "RUNNING"
    subscribers: list[_Subscriber] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class ExecutionFeeds:
    """The per-execution event feeds of one server process."""

    def __init__(self, pool: AsyncConnectionPool[Connection], interval: float = 0.5) -> None:
        self.pool = pool
        self.interval = interval
        self._feeds: dict[int, _Feed] = {}

    async def stream(self, execution_id: int, after: int) -> AsyncIterator[bytes]:
        """SSE bytes: ``events`` batches after ``after``, ``status`` changes, ``end`` when done."""
        subscriber = _Subscriber()
        feed = self._join(execution_id, after, subscriber)
        try:
            async with self.pool.connection() as conn:
                row = await executions.get(conn, execution_id)
            if row is None:
                yield sse("end", json.dumps({"status": None}))
                return
            cursor, status = after, row.status
            async for chunk, read_to in self._read_gap(execution_id, after, row.last_event_id):
                cursor = read_to
                yield chunk
            yield sse("status", json.dumps({"status": status, "last_event_id": cursor}))
            while status not in TERMINAL:
                try:
                    batch = await asyncio.wait_for(subscriber.queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if batch is None:  # the feed stopped
                    return
                if subscriber.lagged or (batch.ids and batch.ids[0] > cursor + 1):
                    subscriber.lagged = False
                    upto = batch.ids[0] - 1 if batch.ids else feed.cursor
                    async for chunk, read_to in self._read_gap(execution_id, cursor, upto):
                        cursor = read_to
                        yield chunk
                parts = [p for i, p in zip(batch.ids, batch.parts, strict=True) if i > cursor]
                if parts:
                    cursor = batch.ids[-1]
                    yield sse("events", "[" + ",".join(parts) + "]", cursor)
                if batch.status != status:
                    status = batch.status
                    yield sse("status", json.dumps({"status": status, "last_event_id": cursor}))
            yield sse("end", json.dumps({"status": status}))
        finally:
            self._leave(feed, subscriber)

    def _join(self, execution_id: int, after: int, subscriber: _Subscriber) -> _Feed:
        feed = self._feeds.get(execution_id)
        if feed is None:
            feed = self._feeds[execution_id] = _Feed(execution_id, after)
            feed.task = asyncio.create_task(self._poll(feed))
        feed.subscribers.append(subscriber)
        return feed

    def _leave(self, feed: _Feed, subscriber: _Subscriber) -> None:
        with contextlib.suppress(ValueError):
            feed.subscribers.remove(subscriber)
        if not feed.subscribers and self._feeds.get(feed.execution_id) is feed:
            del self._feeds[feed.execution_id]
            if feed.task is not None:
                feed.task.cancel()

    async def _read_gap(self, execution_id: int, cursor: int, upto: int) -> AsyncIterator[tuple[bytes, int]]:
        while cursor < upto:
            async with self.pool.connection() as conn:
                found = await events.read(conn, execution_id, after=cursor, limit=min(BATCH, upto - cursor))
            if not found:
                return
            cursor = found[-1].id
            body = "[" + ",".join(encode_event(execution_id, e) for e in found) + "]"
            yield sse("events", body, cursor), cursor

    async def _poll(self, feed: _Feed) -> None:
        try:
            while feed.subscribers:
                await self._tick(feed)
                await asyncio.sleep(self.interval)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the event feed of execution %s stopped", feed.execution_id)
            for subscriber in feed.subscribers:
                with contextlib.suppress(asyncio.QueueFull):
                    subscriber.queue.put_nowait(None)

    async def _tick(self, feed: _Feed) -> None:
        async with self.pool.connection() as conn:
            row = await executions.get(conn, feed.execution_id)
            if row is None:
                return
            found: list[Event] = []
            if row.last_event_id > feed.cursor:
                found = await events.read(conn, feed.execution_id, after=feed.cursor, limit=BATCH)
        if not found and row.status == feed.status:
            return
        feed.status = row.status if len(found) < BATCH else "RUNNING"
        if found:
            feed.cursor = found[-1].id
        parts = [encode_event(feed.execution_id, e) for e in found]
        batch = _Batch([e.id for e in found], parts, feed.status)
        for subscriber in feed.subscribers:
            try:
                subscriber.queue.put_nowait(batch)
            except asyncio.QueueFull:
                subscriber.lagged = True


Matcher = Callable[[dict[str, Any]], bool]


@dataclass
class _ListSubscriber:
    matches: Matcher
    queue: asyncio.Queue[list[dict[str, Any]] | None] = field(default_factory=lambda: asyncio.Queue(QUEUE))


class ListFeed:
    """Changes to the executions list, polled once per ``interval`` for every watcher together."""

    def __init__(self, pool: AsyncConnectionPool[Connection], interval: float = 1.0) -> None:
        self.pool = pool
        self.interval = interval
        self._subscribers: list[_ListSubscriber] = []
        self._task: asyncio.Task[None] | None = None
        self._newest = -1
        self._seen: dict[int, tuple[str, int, bool]] = {}

    async def stream(self, matches: Matcher) -> AsyncIterator[bytes]:
        """SSE bytes: ``changes`` (a list of execution summaries) whenever some match."""
        subscriber = _ListSubscriber(matches)
        self._subscribers.append(subscriber)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll())
        try:
            yield sse("hello", "{}")
            while True:
                try:
                    changed = await asyncio.wait_for(subscriber.queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if changed is None:
                    return
                mine = [item for item in changed if subscriber.matches(item)]
                if mine:
                    yield sse("changes", json.dumps(mine, default=str))
        finally:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(subscriber)

    async def _poll(self) -> None:
        try:
            while self._subscribers:
                changed = await self._changes()
                if changed:
                    for subscriber in self._subscribers:
                        with contextlib.suppress(asyncio.QueueFull):
                            subscriber.queue.put_nowait(changed)
                await asyncio.sleep(self.interval)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the executions list feed stopped")
            for subscriber in self._subscribers:
                with contextlib.suppress(asyncio.QueueFull):
                    subscriber.queue.put_nowait(None)
        finally:
            self._task = None

    async def _changes(self) -> list[dict[str, Any]]:
        watched = [i for i, (status, _, _) in self._seen.items() if status == "RUNNING"]
        async with self.pool.connection() as conn:
            if self._newest < 0:
                self._newest = await browse.newest(conn)
            rows = await browse.changed(conn, self._newest, watched)
        out = []
        for row in rows:
            key = (row.status, row.last_event_id, row.cancel_requested)
            if self._seen.get(row.execution_id) != key:
                out.append(summary(row))
            self._seen[row.execution_id] = key
            self._newest = max(self._newest, row.execution_id)
        for execution_id in [i for i, (status, _, _) in self._seen.items() if status in TERMINAL]:
            del self._seen[execution_id]  # reported once; a finished execution changes no more
        return out


def summary(row: ExecutionRow) -> dict[str, Any]:
    extra = {"last_event_id": row.last_event_id, "cancel_requested": row.cancel_requested}
    return {**views.execution_summary(row), **extra}


def list_matcher(prefix: str | None, globs: tuple[str, ...]) -> Matcher:
    """Whether a changed execution may concern a list of this path prefix for a principal limited
    to ``globs`` (status, time and text filters are left to the page: a row may leave its filter)."""

    def matches(item: dict[str, Any]) -> bool:
        path = str(item.get("path") or "")
        if prefix and not path.startswith(prefix):
            return False
        return not globs or any(fnmatch.fnmatchcase(path, g) for g in globs)

    return matches
