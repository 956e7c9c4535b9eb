"""The orchestration service over a real PostgreSQL: passes, exactly-once recording, restart, replay.

Commands are run by a small in-test driver that claims, runs the real task runner and reports,
exactly as a worker does, so the orchestrator is tested without worker processes.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from noetl.engine import context as rctx
from noetl.engine import events as ev
from noetl.engine.state import fold
from noetl.runtime import loader
from noetl.runtime.credentials import NoCredentials
from noetl.runtime.orchestration import Orchestrator
from noetl.runtime.report import outcome_events
from noetl.runtime.runner import run_command
from noetl.store import catalog, commands, db, executions, migrate
from noetl.store import events as event_log
from noetl.tools.base import Services

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool(pg_database: str) -> AsyncIterator[Any]:
    await migrate.apply(pg_database)
    p = await db.pool(pg_database, min_size=1, max_size=4)
    try:
        yield p
    finally:
        await p.close()


async def register(pool: Any, text: str) -> Any:
    text = textwrap.dedent(text)
    pb = loader.parse(text)
    async with pool.connection() as conn, conn.transaction():
        return await catalog.register(conn, pb.path, text)


async def work_once(pool: Any, worker: str = "w1", limit: int = 50, report_twice: bool = False) -> int:
    """Claim and run what is ready; report each outcome. Returns how many commands ran."""
    async with pool.connection() as conn:
        leases = await commands.claim(conn, worker, ["default"], limit, 30.0)
    services = Services()
    for lease in leases:
        async with pool.connection() as conn:
            entry = await catalog.get(conn, catalog_id=lease.catalog_id)
        pb = loader.parse(entry.content, source=entry.path)
        ctx = rctx.from_wire(lease.context)
        out = await run_command(
            pb,
            lease.step,
            ctx,
            execution_id=str(lease.execution_id),
            services=services,
            credentials=NoCredentials(),
        )
        command = ev.Command(
            lease.command_id, str(lease.execution_id), lease.step, ctx, lease.index, lease.attempt
        )
        reported = [e.to_dict(str(lease.execution_id)) for e in outcome_events(command, out, time.time())]
        for _ in range(2 if report_twice else 1):
            async with pool.connection() as conn, conn.transaction():
                await commands.report(
                    conn, worker, lease.command_id, lease.attempt, out.status == "ok", reported
                )
    return len(leases)


async def run_to_end(
    pool: Any, orch: Orchestrator, execution_id: int, timeout: float = 30.0, **kw: Any
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await orch.run_pass([execution_id])
        async with pool.connection() as conn:
            row = await executions.get(conn, execution_id)
        if row.status != "RUNNING":
            return row
        await work_once(pool, **kw)
    raise AssertionError("execution did not finish in time")


CHAIN = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: chain, path: it/chain}
workload: {n: 1}
workflow:
  - step: start
    tool: {kind: python, input: {n: "{{ n }}"}, code: "result = {'v': n + 1}"}
    set: {ctx.seen: "{{ output.data.v }}"}
    next: {arcs: [{step: each}]}
  - step: each
    loop: {in: "{{ [1, 2, 3] }}", iterator: i, spec: {mode: parallel, max_in_flight: 2}}
    tool: {kind: python, input: {i: "{{ iter.i }}", base: "{{ start.data.v }}"}, code: "result = i * base"}
    next: {arcs: [{step: end, when: "{{ event.name == 'loop.done' }}"}]}
  - step: end
    tool: {kind: python, input: {r: "{{ each.results }}", s: "{{ seen }}"}, code: "result = {'sum': sum(r), 'seen': s}"}
"""


async def test_execution_runs_to_completion_with_the_local_outcome(pool: Any) -> None:
    entry = await register(pool, CHAIN)
    orch = Orchestrator(pool)
    eid = await orch.start(entry, {"n": 2})
    row = await run_to_end(pool, orch, eid)
    assert row.status == "COMPLETED"
    assert row.result == {"sum": 18, "seen": 3}
    async with pool.connection() as conn:
        log = await event_log.read(conn, eid)
    assert [e.id for e in log] == list(range(1, len(log) + 1))
    assert log[0].name == ev.PLAYBOOK_INITIALIZED and log[-1].name == ev.PLAYBOOK_COMPLETED
    state = fold(log)
    assert state.final_result == row.result and state.executed == ["start", "each", "end"]
    replayed, digest = await orch.state(eid)
    again, digest2 = await Orchestrator(pool).state(eid)
    assert replayed == again and digest == digest2


async def test_duplicate_reports_are_recorded_once(pool: Any) -> None:
    entry = await register(pool, CHAIN)
    orch = Orchestrator(pool)
    eid = await orch.start(entry, {"n": 1})
    row = await run_to_end(pool, orch, eid, report_twice=True)
    assert row.status == "COMPLETED" and row.result == {"sum": 12, "seen": 2}
    async with pool.connection() as conn:
        log = await event_log.read(conn, eid)
    completed = [e.command_id for e in log if e.name == ev.COMMAND_COMPLETED]
    assert len(completed) == len(set(completed)) == 5  # start, 3 iterations, end


async def test_a_new_orchestrator_continues_from_the_event_log(pool: Any) -> None:
    entry = await register(pool, CHAIN)
    first = Orchestrator(pool)
    eid = await first.start(entry, {"n": 5})
    await work_once(pool)
    await first.run_pass([eid])
    # "restart": a fresh instance with no cache finishes the execution from the log
    row = await run_to_end(pool, Orchestrator(pool), eid)
    assert row.status == "COMPLETED" and row.result == {"sum": 36, "seen": 6}


async def test_cancel_stops_dispatch_and_cancels_commands(pool: Any) -> None:
    entry = await register(pool, CHAIN)
    orch = Orchestrator(pool)
    eid = await orch.start(entry, {"n": 1})
    assert await orch.cancel(eid, "operator said so")
    async with pool.connection() as conn:
        row = await executions.get(conn, eid)
        log = await event_log.read(conn, eid)
        leases = await commands.claim(conn, "w9", ["default"], 10, 30.0)
    assert row.status == "CANCELLED"
    assert [e.name for e in log][-2:] == [ev.COMMAND_CANCELLED, ev.PLAYBOOK_CANCELLED]
    assert all(lease.execution_id != eid for lease in leases)
    assert not await orch.cancel(eid, "again")


async def test_failure_is_recorded_with_error(pool: Any) -> None:
    entry = await register(
        pool,
        """
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: boom, path: it/boom}
    workflow:
      - step: start
        tool: {kind: python, code: "raise ValueError('nope')"}
    """,
    )
    orch = Orchestrator(pool)
    eid = await orch.start(entry, None)
    row = await run_to_end(pool, orch, eid)
    assert row.status == "FAILED"
    assert row.error["step"] == "start" and "nope" in row.error["message"]


async def test_many_executions_in_one_pass(pool: Any) -> None:
    entry = await register(
        pool,
        """
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: one, path: it/one}
    workflow:
      - step: start
        tool: {kind: noop}
    """,
    )
    orch = Orchestrator(pool)
    ids = [await orch.start(entry, None) for _ in range(20)]
    assert await work_once(pool, limit=100) >= 20
    recorded = await orch.run_pass(None)
    assert recorded >= 20
    async with pool.connection() as conn:
        rows = [await executions.get(conn, i) for i in ids]
    assert {r.status for r in rows} == {"COMPLETED"}
