"""The DBOS Transact side of ``bench/distributed.py``: the same workloads as DBOS workflows and steps.

Usage (normally started by ``bench/distributed.py``, one process per workload)::

    python bench/dbos_peer.py W1|W2|W3 --database-url URL [--runs 3] [--json]

DBOS (``pip install dbos``) is not a NoETL dependency; it is installed into the venv for the
benchmark only. The database named by ``--database-url`` must exist and be empty (DBOS creates its
``dbos`` schema there); the caller creates and drops it.

W1  a workflow of 40 sequential steps, step k returns ``v + 1``: ``--executions`` (10) executions
    per run, each timed from the call to its result, in this process (DBOS runs steps in the
    calling process; each step's output is checkpointed in PostgreSQL). Expected result 40.
W2  an async workflow that gathers 1,000 async steps ``x * 2`` (``asyncio.gather``) and returns
    their sum; one execution per run. Expected 999,000.
W3  10,000 workflows ``x * 2`` (the smallest durable unit DBOS queues: a workflow, no step)
    through a DBOS queue served by 2 worker processes (``--queue-worker``, ``worker_concurrency``
    64 each, queue polled every ``--polling`` s). This process enqueues all items with
    ``DBOSClient.enqueue_in_transaction`` in transactions of 1,000 while the workers already run,
    and waits until all 10,000 have status SUCCESS; time from the first enqueue to the last
    completion. The outputs are summed afterwards (expected 99,990,000). Then, for scale, the
    queue alone: 10,000 jobs enqueued on a queue nobody serves are moved to the served queue in
    one UPDATE and timed from that commit to the last completion (``drain_items_per_s``).

Prints ``{"W1": {"execution_ms": [...]}}`` style JSON (samples in ms, or for W3 the items per
second and the enqueue time); exit code 1 with a message on stderr when a result is wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from dbos import DBOS, DBOSClient, EnqueueOptions

APP = "noetl_bench"
QUEUE = "bench_w3"
JOB = "bench_double_job"
CHAIN_LENGTH = 40
LOOP_ITEMS = 1000
QUEUE_ITEMS = 10_000
ENQUEUE_BATCH = 1000
WORKER_CONCURRENCY = 64


class WrongResult(Exception):
    """A workflow finished with the wrong result, or not at all in time."""


# --------------------------------------------------------------------------- workflows


@DBOS.step()
def add_one(v: int) -> int:
    return v + 1


@DBOS.workflow()
def chain(n: int) -> int:
    v = 0
    for _ in range(n):
        v = add_one(v)
    return v


@DBOS.step()
async def double(x: int) -> int:
    return x * 2


@DBOS.workflow()
async def fan_out(n: int) -> int:
    return sum(await asyncio.gather(*(double(x) for x in range(n))))


@DBOS.workflow(name=JOB)
def double_job(x: int) -> int:
    return x * 2


# --------------------------------------------------------------------------- workloads


def launch(url: str, *, listen: list[str], executor_id: str) -> None:
    DBOS(
        config={
            "name": APP,
            "system_database_url": url,
            "log_level": "WARNING",
            "executor_id": executor_id,
        }
    )
    DBOS.listen_queues(listen)
    DBOS.launch()


def bench_w1(runs: int, executions: int) -> dict[str, list[float]]:
    chain(CHAIN_LENGTH)  # warm: connections, registry
    samples: list[float] = []
    for _ in range(runs * executions):
        start = time.perf_counter()
        result = chain(CHAIN_LENGTH)
        samples.append((time.perf_counter() - start) * 1000)
        if result != CHAIN_LENGTH:
            raise WrongResult(f"W1 chain returned {result!r}, expected {CHAIN_LENGTH}")
    return {"execution_ms": samples}


def bench_w2(runs: int) -> dict[str, list[float]]:
    expected = sum(2 * x for x in range(LOOP_ITEMS))

    async def timed() -> list[float]:
        await fan_out(50)  # warm: the asyncio step path
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            result = await fan_out(LOOP_ITEMS)
            samples.append((time.perf_counter() - start) * 1000)
            if result != expected:
                raise WrongResult(f"W2 fan-out returned {result!r}, expected {expected}")
        return samples

    return {"execution_ms": asyncio.run(timed())}


def bench_w3(url: str, runs: int, polling: float, timeout: float) -> dict[str, list[float]]:
    DBOS.register_queue(QUEUE, worker_concurrency=WORKER_CONCURRENCY, polling_interval_sec=polling)
    workers = [start_queue_worker(url, n, polling) for n in (1, 2)]
    client = DBOSClient(system_database_url=url, application_name=APP)
    samples: dict[str, list[float]] = {
        "items_per_s": [],
        "elapsed_ms": [],
        "enqueue_ms": [],
        "drain_items_per_s": [],
    }
    try:
        wait_for_executors(client, 2, timeout=60)
        for run in range(runs):
            elapsed, enqueued = drain_once(client, f"r{run}", timeout)
            samples["elapsed_ms"].append(elapsed * 1000)
            samples["enqueue_ms"].append(enqueued * 1000)
            samples["items_per_s"].append(QUEUE_ITEMS / elapsed)
            check_outputs(client, f"r{run}")
            drained = drain_prefilled(client, f"p{run}", timeout)
            samples["drain_items_per_s"].append(QUEUE_ITEMS / drained)
            check_outputs(client, f"p{run}")
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        client.destroy()
    return samples


def start_queue_worker(url: str, n: int, polling: float) -> subprocess.Popen[bytes]:
    command = [sys.executable, str(Path(__file__).resolve()), "--queue-worker", str(n)]
    command += ["--database-url", url, "--polling", str(polling)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=sys.stderr)


def wait_for_executors(client: DBOSClient, count: int, timeout: float) -> None:
    """Wait until the queue workers have launched (their DBOS processes have migrated and run)."""
    import sqlalchemy as sa

    engine = client._sys_db.engine
    deadline = time.monotonic() + timeout
    probe = "SELECT count(DISTINCT executor_id) FROM dbos.workflow_status WHERE name = :name"
    # Each worker runs one ping workflow on start (see serve_queue) so that its arrival is visible.
    while True:
        with engine.connect() as conn:
            seen = conn.execute(sa.text(probe), {"name": "bench_ping"}).scalar_one()
        if seen >= count:
            return
        if time.monotonic() > deadline:
            raise WrongResult(f"DBOS queue workers did not start within {timeout:g} s")
        time.sleep(0.1)


def drain_once(client: DBOSClient, prefix: str, timeout: float) -> tuple[float, float]:
    """Enqueue QUEUE_ITEMS jobs and wait for all of them; (seconds to the last one, seconds enqueueing)."""
    start = time.perf_counter()
    enqueue(client, QUEUE, prefix)
    enqueued = time.perf_counter() - start
    wait_done(client, prefix, start + timeout)
    return time.perf_counter() - start, enqueued


def drain_prefilled(client: DBOSClient, prefix: str, timeout: float) -> float:
    """The queue's own capacity: QUEUE_ITEMS jobs enqueued on a queue nobody serves, then moved to
    QUEUE in one UPDATE; seconds from that commit to the last completion."""
    import sqlalchemy as sa

    enqueue(client, QUEUE + "_held", prefix)
    move = (
        "UPDATE dbos.workflow_status SET queue_name = :q WHERE queue_name = :held AND workflow_uuid LIKE :p"
    )
    start = time.perf_counter()
    with client._sys_db.engine.begin() as conn:
        conn.execute(sa.text(move), {"q": QUEUE, "held": QUEUE + "_held", "p": prefix + "-%"})
    wait_done(client, prefix, start + timeout)
    return time.perf_counter() - start


def enqueue(client: DBOSClient, queue: str, prefix: str) -> None:
    engine = client._sys_db.engine
    for first in range(0, QUEUE_ITEMS, ENQUEUE_BATCH):
        with engine.begin() as conn:
            for x in range(first, min(first + ENQUEUE_BATCH, QUEUE_ITEMS)):
                options: EnqueueOptions = {
                    "queue_name": queue,
                    "workflow_name": JOB,
                    "workflow_id": f"{prefix}-{x}",
                }
                client.enqueue_in_transaction(conn, options, x)


def wait_done(client: DBOSClient, prefix: str, deadline: float) -> None:
    import sqlalchemy as sa

    count = "SELECT count(*) FROM dbos.workflow_status WHERE queue_name = :q AND workflow_uuid LIKE :p "
    while True:
        with client._sys_db.engine.connect() as conn:
            done = conn.execute(sa.text(count + "AND status = 'SUCCESS'"), {"q": QUEUE, "p": prefix + "-%"})
            finished = done.scalar_one()
        if finished >= QUEUE_ITEMS:
            return
        if time.perf_counter() > deadline:
            raise WrongResult(f"W3: {finished} of {QUEUE_ITEMS} DBOS jobs done in time")
        time.sleep(0.02)


def check_outputs(client: DBOSClient, prefix: str) -> None:
    statuses = client.list_workflows(queue_name=QUEUE, workflow_id_prefix=prefix + "-", load_input=False)
    total = 0
    for status in statuses:
        if status.status == "SUCCESS" and isinstance(status.output, int):
            total += status.output
    expected = sum(2 * x for x in range(QUEUE_ITEMS))
    if len(statuses) != QUEUE_ITEMS or total != expected:
        raise WrongResult(f"W3: {len(statuses)} jobs, outputs sum to {total} (expected {expected})")


@DBOS.workflow(name="bench_ping")
def ping() -> int:
    return 1


def serve_queue(url: str, n: int) -> None:
    """A queue worker process: dequeue and run jobs of QUEUE until SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    launch(url, listen=[QUEUE], executor_id=f"bench-worker-{n}-{os.getpid()}")
    ping()
    stop.wait()
    DBOS.destroy(workflow_completion_timeout_sec=5)


# --------------------------------------------------------------------------- command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("workload", nargs="?", choices=["W1", "W2", "W3"])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--executions", type=int, default=10, help="W1 executions per run (default 10)")
    parser.add_argument("--polling", type=float, default=0.05, help="W3 queue polling interval, s")
    parser.add_argument("--timeout", type=float, default=300.0, help="W3: give up after this many s per run")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--queue-worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.queue_worker is None and args.workload is None:
        parser.error("name a workload (W1, W2, W3)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.queue_worker is not None:
        serve_queue(args.database_url, args.queue_worker)
        return 0
    import dbos

    launch(args.database_url, listen=["bench_unused"], executor_id=f"bench-main-{os.getpid()}")
    try:
        if args.workload == "W1":
            samples = bench_w1(args.runs, args.executions)
        elif args.workload == "W2":
            samples = bench_w2(args.runs)
        else:
            samples = bench_w3(args.database_url, args.runs, args.polling, args.timeout)
    except WrongResult as exc:
        print(f"dbos {args.workload}: {exc}", file=sys.stderr)
        return 1
    finally:
        DBOS.destroy(workflow_completion_timeout_sec=5)
    report = {"workload": args.workload, "dbos_version": dbos_version(dbos), "samples": samples}
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    return 0


def dbos_version(module: Any) -> str:
    from importlib.metadata import version

    try:
        return version("dbos")
    except Exception:
        return str(getattr(module, "__version__", "unknown"))


if __name__ == "__main__":
    sys.exit(main())
