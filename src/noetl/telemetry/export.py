"""The exporter: every event of the log, delivered to each configured sink, at least once.

Sinks: ClickHouse (``noetl.telemetry.clickhouse.EventSink``: a row per event) and OTLP traces
(``noetl.telemetry.traces.TraceSink``: the spans of each execution that ended). Each has a durable
cursor of its own (``noetl.store.exports``), so a slow or broken sink never holds another back.

One server exports at a time (a session advisory lock, as the reaper and the scheduler lead). For
each sink the leader reads the log after the sink's cursor, hands the batch to the sink, and only
then advances the cursor; a crash between the two sends the batch again, which every sink takes
idempotently (ClickHouse counts an event once; a span re-sent has the same ids). While a sink is
down the leader backs off for that sink (up to :data:`MAX_BACKOFF_SECONDS`), records the error on its
cursor for ``noetl export status``, and resumes from the cursor when the sink answers again.

Events are stored redacted (secrets never reach the log), so what leaves is what the log holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from noetl.dsl import parser
from noetl.errors import NoetlError, SinkError
from noetl.store import catalog, db, exports
from noetl.store.db import Connection
from noetl.store.errors import translated

log = logging.getLogger("noetl.export")

LEADER_LOCK_KEY = 0x6E6F65746C_0010
"""Fixed advisory lock key of the export leader ("noetl" in ASCII + 16)."""
MAX_BACKOFF_SECONDS = 5.0
KINDS_CACHED = 256
"""Playbooks whose step -> tool kind map the exporter keeps (by catalog id)."""


@dataclass(frozen=True, slots=True)
class ExportSettings:
    batch: int = 5000
    """Events per batch."""
    interval: float = 1.0
    """Seconds between polls once every sink has caught up."""


class Sink(Protocol):
    """Where exported events go."""

    name: str
    """The sink's cursor name (``clickhouse``, ``otlp``)."""

    async def deliver(self, conn: Connection, events: Sequence[dict[str, Any]], kinds: KindCache) -> None:
        """Take one batch (``exports.batch`` rows); SinkError when the sink did not take it."""

    async def close(self) -> None: ...


class KindCache:
    """Step -> tool kind of catalog entries, read once each (bounded)."""

    def __init__(self) -> None:
        self._kinds: OrderedDict[int, dict[str, str]] = OrderedDict()

    async def of(self, conn: Connection, catalog_id: int | None) -> Mapping[str, str]:
        if catalog_id is None:
            return {}
        kinds = self._kinds.get(catalog_id)
        if kinds is None:
            entry = await catalog.get(conn, catalog_id=catalog_id)
            kinds = step_kinds(entry.content) if entry is not None else {}
            self._kinds[catalog_id] = kinds
            if len(self._kinds) > KINDS_CACHED:
                self._kinds.popitem(last=False)
        else:
            self._kinds.move_to_end(catalog_id)
        return kinds


def step_kinds(content: str) -> dict[str, str]:
    """Step name -> tool kind (``http+python`` for a pipeline) of a playbook's YAML; empty if it no
    longer parses (the export must not stop over an old catalog entry)."""
    try:
        playbook = parser.parse(content)
    except NoetlError:
        return {}
    return {step.name: "+".join(task.kind for task in step.tool) for step in playbook.workflow}


@dataclass
class _Lane:
    """One sink's place in the export loop: its backoff after failures."""

    sink: Sink
    backoff: float
    next_try: float = 0.0
    failures: int = 0


class Exporter:
    """The export task of one server (``run``); ``leader`` says whether it exports right now."""

    def __init__(self, database_url: str, pool: Any, sinks: Sequence[Sink], settings: ExportSettings) -> None:
        self.database_url = database_url
        self.pool = pool
        self.settings = settings
        self.sinks = {sink.name: sink for sink in sinks}
        self._lanes = [_Lane(sink, settings.interval) for sink in sinks]
        self.kinds = KindCache()
        self.leader = False

    def sink(self, name: str) -> Sink | None:
        return self.sinks.get(name)

    async def run(self, stop: asyncio.Event) -> None:
        """Export while this server leads, until ``stop`` is set; survives lost connections."""
        try:
            while not stop.is_set():
                try:
                    conn = await db.connect(self.database_url)
                except NoetlError as exc:
                    log.warning("exporter cannot connect (%s); retrying", exc)
                    await _wait(stop, MAX_BACKOFF_SECONDS)
                    continue
                try:
                    await self._lead(conn, stop)
                except NoetlError as exc:
                    log.warning("exporter lost its connection (%s); reconnecting", exc)
                finally:
                    self.leader = False
                    await conn.close()
        finally:
            for sink in self.sinks.values():
                await sink.close()

    async def _lead(self, conn: Connection, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self.leader:
                with translated("checking the exporter's connection"):
                    await conn.execute("SELECT 1")
            else:
                self.leader = await _try_lock(conn)
            busy = False
            if self.leader:
                for lane in self._lanes:
                    busy = await self._turn(lane) or busy
            if not busy:
                await _wait(stop, self.settings.interval)

    async def _turn(self, lane: _Lane) -> bool:
        """One batch for one sink, unless it is backing off; True when more may be waiting."""
        if time.monotonic() < lane.next_try:
            return False
        try:
            sent = await self.export_once(lane.sink)
        except SinkError as exc:
            lane.failures += 1
            await self._failed(lane.sink.name, str(exc))
            log.warning("export to %s failed (%s); retrying in %.1fs", lane.sink.name, exc, lane.backoff)
            lane.next_try = time.monotonic() + lane.backoff
            lane.backoff = min(lane.backoff * 2, MAX_BACKOFF_SECONDS)
            return False
        lane.backoff = self.settings.interval
        return sent >= self.settings.batch

    async def export_once(self, sink: Sink) -> int:
        """Deliver the next batch after the sink's cursor; how many events it held."""
        async with self.pool.connection() as conn:
            cursor = await exports.cursor(conn, sink.name)
            events = await exports.batch(conn, cursor.position, self.settings.batch)
            if not events:
                return 0
            await sink.deliver(conn, events, self.kinds)
            await exports.advance(conn, sink.name, exports.position_of(events[-1]), len(events))
        return len(events)

    async def _failed(self, sink: str, error: str) -> None:
        with contextlib.suppress(NoetlError):
            async with self.pool.connection() as conn:
                await exports.failed(conn, sink, error)


async def status(conn: Connection) -> list[dict[str, Any]]:
    """Every sink's cursor with its lag in events and seconds (``noetl export status``)."""
    out = []
    for cursor in await exports.cursors(conn):
        events, seconds = await exports.lag(conn, cursor.position)
        out.append(
            {
                "sink": cursor.sink,
                "exported": cursor.exported,
                "lag_events": events,
                "lag_seconds": round(seconds, 3),
                "last_error": cursor.last_error,
                "updated_at": cursor.updated_at.isoformat(),
            }
        )
    return out


async def _try_lock(conn: Connection) -> bool:
    with translated("taking the exporter lock"):
        cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK_KEY,))
        found = await cursor.fetchone()
    return bool(found and found[0])


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
