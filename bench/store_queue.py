"""Throughput sanity check of the PostgreSQL command queue (``noetl.store.commands``), not a test.

Usage::

    python bench/store_queue.py [--database-url URL] [--items 10000] [--batch 100] [--workers 2]

Without ``--database-url`` (or ``NOETL_DATABASE_URL``) it uses the embedded PostgreSQL. It creates a
scratch database, migrates it, runs the measurements and drops it. Measured, each with durability
on (``synchronous_commit`` at the server's setting):

Q1  insert: ``commands.insert`` of ``--items`` commands in batches of 1,000 (commands per second).
Q2  claim + report, one worker: ``claim(limit=batch)`` then one ``report`` per command (items/s).
Q3  claim + report_many, one worker: ``claim(limit=batch)`` then one ``report_many`` (items/s).
Q4  like Q2 with ``--workers`` concurrent workers, each its own connection (items/s).
Q5  like Q3 with ``--workers`` concurrent workers (items/s): the shape a worker should use.
Q6  one sequential hop: insert 1, claim 1, report 1 (milliseconds per hop, median).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from noetl.store import commands, db, embedded, migrate
from noetl.store.db import Connection
from noetl.store.ports import NewCommand, Report

CONTEXT = {"workload": {"region": "eu"}, "iter": {"n": 1}, "_index": 0}


def with_database(url: str, name: str) -> str:
    if "://" not in url:  # key=value conninfo
        return f"{url} dbname={name}"
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def new_commands(prefix: str, n: int) -> list[NewCommand]:
    return [NewCommand(f"{prefix}:{i}", 1, 1, "step", i, CONTEXT) for i in range(n)]


async def fill(conn: Connection, prefix: str, n: int) -> float:
    start = time.perf_counter()
    for first in range(0, n, 1000):
        await commands.insert(conn, new_commands(f"{prefix}-{first}", min(1000, n - first)))
    return time.perf_counter() - start


async def drain(conn: Connection, worker: str, batch: int, many: bool) -> int:
    done = 0
    while leases := await commands.claim(conn, worker, ["default"], batch, 60.0):
        if many:
            reports = [
                Report(worker, x.command_id, x.attempt, True, [{"event_type": "command.completed"}])
                for x in leases
            ]
            done += len(await commands.report_many(conn, reports))
        else:
            for x in leases:
                done += await commands.report(
                    conn, worker, x.command_id, x.attempt, True, [{"event_type": "command.completed"}]
                )
    return done


async def timed(items: int, work: Callable[[], Awaitable[int]]) -> float:
    start = time.perf_counter()
    done = await work()
    elapsed = time.perf_counter() - start
    assert done == items, f"expected {items} items, processed {done}"
    return items / elapsed


async def hop(conn: Connection, n: int) -> float:
    samples = []
    for i in range(n):
        start = time.perf_counter()
        await commands.insert(conn, [NewCommand(f"hop:{i}", 1, 1, "step", None, CONTEXT)])
        (lease,) = await commands.claim(conn, "w", ["default"], 1, 60.0)
        assert await commands.report(conn, "w", lease.command_id, lease.attempt, True, [])
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def show(label: str, value: float, unit: str, digits: int = 0) -> None:
    print(f"{label:38}{value:10.{digits}f} {unit}")


async def run(url: str, items: int, batch: int, workers: int) -> None:
    conns = [await db.connect(url) for _ in range(max(workers, 1))]
    conn = conns[0]
    setting = await (await conn.execute("SHOW synchronous_commit")).fetchone()
    durability = setting[0] if setting else "?"
    print(f"synchronous_commit={durability}  items={items}  batch={batch}  workers={workers}")

    elapsed = await fill(conn, "q1", items)
    show("Q1 insert", items / elapsed, "commands/s")
    rate = await timed(items, lambda: drain(conn, "w1", batch, many=False))
    show("Q2 claim + report (1 worker)", rate, "items/s")

    await fill(conn, "q3", items)
    rate = await timed(items, lambda: drain(conn, "w1", batch, many=True))
    show("Q3 claim + report_many (1 worker)", rate, "items/s")

    for label, many in (("Q4 claim + report", False), ("Q5 claim + report_many", True)):
        await fill(conn, label[:2], items)

        async def together(many: bool = many) -> int:
            counts = await asyncio.gather(*(drain(c, f"w{i}", batch, many) for i, c in enumerate(conns)))
            return sum(counts)

        rate = await timed(items, together)
        show(f"{label} ({workers} workers)", rate, "items/s")
    show("Q6 sequential hop", await hop(conn, 200), "ms median (insert, claim, report)", digits=2)
    for c in conns:
        await c.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("NOETL_DATABASE_URL"))
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    server_url = args.database_url or embedded.ensure()
    name = f"noetl_bench_{uuid.uuid4().hex[:8]}"
    async with await db.connect(server_url) as admin:
        await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = with_database(server_url, name)
        await migrate.apply(url)
        await run(url, args.items, args.batch, args.workers)
    finally:
        async with await db.connect(server_url) as admin:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    asyncio.run(main())
