"""The worker against a real PostgreSQL, as real processes: claim, run, report, heartbeat, stop, recover.

Commands are put on the queue directly (``commands.insert``) so that each test controls exactly what
a worker sees; every test uses its own pool so that workers of different tests never meet. Shell
steps that must stay running wait for a "gate" file the test creates, and write their pid first so
that the test knows they started (and can check that they were stopped).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from noetl.engine import events as ev
from noetl.runtime import loader
from noetl.store import catalog, commands, credentials, crypto, db, ids, workers
from noetl.store.ports import CatalogEntry, NewCommand

from . import worker_fixtures
from .worker_fixtures import WorkerProcess, eventually, kill_group, process_alive

migrated_url = worker_fixtures.migrated_url
spawn_worker = worker_fixtures.spawn_worker

Spawn = Callable[..., WorkerProcess]

SHELL = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: worker_shell, path: tests/worker/shell}
workflow:
  - step: start
    tool: {kind: shell, command: "echo value-{{ n }}"}
  - step: double
    tool: {kind: python, input: {n: "{{ n }}"}, code: "result = {'doubled': n * 2}"}
"""

GATED = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: worker_gated, path: tests/worker/gated}
workflow:
  - step: start
    tool:
      kind: shell
      command: >-
        echo $$ > {{ dir }}/{{ token }}.pid;
        while [ ! -e {{ dir }}/gate ]; do sleep 0.01; done;
        echo {{ token }} >> {{ dir }}/ran.txt; echo done-{{ token }}
"""

SECRET_USER = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: worker_secret, path: tests/worker/secret}
keychain:
  - {name: api, kind: credential, credential: api_token}
  - {name: missing, kind: credential, credential: no_such_credential}
workflow:
  - step: start
    tool:
      kind: shell
      command: "printf %s '{{ keychain.api.token }}' > {{ dir }}/secret.txt; echo token={{ keychain.api.token }}"
  - step: broken
    tool: {kind: shell, command: "echo {{ keychain.missing.token }}"}
"""


@asynccontextmanager
async def connection(url: str) -> AsyncIterator[db.Connection]:
    conn = await db.connect(url)
    try:
        yield conn
    finally:
        await conn.close()


async def register(url: str, content: str) -> CatalogEntry:
    async with connection(url) as conn:
        return await catalog.register(conn, loader.parse(content).path, content)


async def enqueue(
    url: str, catalog_id: int | None, pool: str, step: str, workloads: list[dict[str, Any]], **extra: Any
) -> list[NewCommand]:
    """One command per workload, each of its own execution; returns them in order."""
    new = []
    for workload in workloads:
        execution_id = ids.new_id()
        context = {"workload": workload, "execution_id": str(execution_id), "steps": {}}
        new.append(
            NewCommand(f"{execution_id}:1", execution_id, catalog_id, step, None, context, pool, **extra)
        )
    async with connection(url) as conn:
        await commands.insert(conn, new)
    return new


async def rows(url: str, new: list[NewCommand]) -> list[dict[str, Any]]:
    """The queue rows of ``new`` commands, in the same order."""
    from psycopg.rows import dict_row

    async with connection(url) as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT command_id, status, attempt, worker_id, outcome, lease_until < now() AS expired"
            " FROM noetl.command WHERE command_id = ANY(%s)",
            [[c.command_id for c in new]],
        )
        found = {row["command_id"]: row for row in await cur.fetchall()}
    return [found[c.command_id] for c in new]


async def settled(
    url: str, new: list[NewCommand], statuses: tuple[str, ...] = ("done", "failed")
) -> list[dict[str, Any]]:
    """Wait until every command of ``new`` has one of ``statuses``; their rows."""

    async def check() -> list[dict[str, Any]]:
        found = await rows(url, new)
        return found if all(row["status"] in statuses for row in found) else []

    return await eventually(check, f"{len(new)} command(s) to reach {statuses}")


async def leased_by(url: str, worker_id: str) -> int:
    async with connection(url) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM noetl.command WHERE status = 'leased' AND worker_id = %s", [worker_id]
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


def terminal(row: dict[str, Any]) -> dict[str, Any]:
    outcome = row["outcome"]
    assert [e["event_type"] for e in outcome][:-1] in (
        [ev.CALL_DONE, ev.STEP_EXIT],
        [ev.CALL_ERROR, ev.STEP_EXIT],
    ), outcome
    return dict(outcome[-1])


async def test_worker_runs_commands_and_reports_their_events(migrated_url: str, spawn_worker: Spawn) -> None:
    entry = await register(migrated_url, SHELL)
    async with connection(migrated_url) as conn:
        broken = await catalog.register(conn, "tests/worker/broken", "workflow: [unclosed")
    echoes = await enqueue(migrated_url, entry.catalog_id, "basic", "start", [{"n": 1}, {"n": 2}, {"n": 3}])
    doubled = await enqueue(migrated_url, entry.catalog_id, "basic", "double", [{"n": 21}])
    missing = await enqueue(migrated_url, 424242, "basic", "start", [{}])
    invalid = await enqueue(migrated_url, broken.catalog_id, "basic", "start", [{}])
    worker = spawn_worker(pools=["basic"], concurrency=4)

    found = await settled(migrated_url, echoes + doubled + missing + invalid)

    for command, row in zip(echoes, found[:3], strict=True):
        assert (row["status"], row["attempt"], row["worker_id"]) == ("done", 1, worker.worker_id)
        call, exit_, last = row["outcome"]
        assert [call["event_type"], exit_["event_type"], last["event_type"]] == [
            ev.CALL_DONE,
            ev.STEP_EXIT,
            ev.COMMAND_COMPLETED,
        ]
        assert {e["command_id"] for e in row["outcome"]} == {command.command_id}
        assert {e["step"] for e in row["outcome"]} == {"start"}
        assert "event_id" not in call and "execution_id" not in call
        n = command.context["workload"]["n"]
        assert call["data"]["result"] == {"stdout": f"value-{n}\n", "stderr": "", "exit_code": 0}
    assert found[3]["outcome"][0]["data"]["result"] == {"doubled": 42}
    for row, reason in ((found[4], "catalog entry 424242 not found"), (found[5], "is invalid")):
        assert row["status"] == "failed"
        assert terminal(row)["event_type"] == ev.COMMAND_FAILED
        assert reason in terminal(row)["data"]["error"]["message"]

    async with connection(migrated_url) as conn:
        registered = {w["worker_id"]: w for w in await workers.list(conn)}
    assert registered[worker.worker_id]["pools"] == ["basic"]
    worker.signal(signal.SIGTERM)
    assert await worker.exit_code() == 0
    async with connection(migrated_url) as conn:
        assert worker.worker_id not in {w["worker_id"] for w in await workers.list(conn)}


async def test_concurrency_limits_the_leases_a_worker_holds(
    migrated_url: str, spawn_worker: Spawn, tmp_path: Path
) -> None:
    entry = await register(migrated_url, GATED)
    work = [{"dir": str(tmp_path), "token": f"c{i}"} for i in range(5)]
    new = await enqueue(migrated_url, entry.catalog_id, "limited", "start", work)
    worker = spawn_worker(pools=["limited"], concurrency=2)

    async def two_running() -> bool:
        return len(list(tmp_path.glob("*.pid"))) == 2

    await eventually(two_running, "two commands to start")
    assert await leased_by(migrated_url, worker.worker_id) == 2
    assert [row["status"] for row in await rows(migrated_url, new)].count("ready") == 3
    most = 0

    async def all_done() -> bool:
        nonlocal most
        most = max(most, await leased_by(migrated_url, worker.worker_id))
        return all(row["status"] == "done" for row in await rows(migrated_url, new))

    (tmp_path / "gate").touch()
    await eventually(all_done, "all commands to finish")
    assert 1 <= most <= 2
    assert sorted((tmp_path / "ran.txt").read_text().split()) == sorted(w["token"] for w in work)


async def test_two_workers_never_run_the_same_command(
    migrated_url: str, spawn_worker: Spawn, tmp_path: Path
) -> None:
    entry = await register(migrated_url, GATED)
    (tmp_path / "gate").touch()
    work = [{"dir": str(tmp_path), "token": f"t{i}"} for i in range(40)]
    first = spawn_worker(pools=["shared"], concurrency=4)
    second = spawn_worker(pools=["shared"], concurrency=4)
    new = await enqueue(migrated_url, entry.catalog_id, "shared", "start", work)

    found = await settled(migrated_url, new)

    assert all(row["status"] == "done" and row["attempt"] == 1 for row in found)
    assert {row["worker_id"] for row in found} <= {first.worker_id, second.worker_id}
    ran = (tmp_path / "ran.txt").read_text().split()
    assert sorted(ran) == sorted(w["token"] for w in work)  # each exactly once


async def test_sigterm_lets_a_running_command_finish_within_the_grace_period(
    migrated_url: str, spawn_worker: Spawn, tmp_path: Path
) -> None:
    entry = await register(migrated_url, GATED)
    new = await enqueue(
        migrated_url, entry.catalog_id, "grace", "start", [{"dir": str(tmp_path), "token": "g"}]
    )
    worker = spawn_worker(pools=["grace"], grace_seconds=15)
    await eventually(lambda: _exists(tmp_path / "g.pid"), "the command to start")

    worker.signal(signal.SIGTERM)
    await eventually(
        lambda: _logged(worker, "stopping: waiting up to"), "the worker to start its grace period"
    )
    assert worker.process.poll() is None  # still waiting for the running command
    (tmp_path / "gate").touch()

    assert await worker.exit_code() == 0
    [row] = await rows(migrated_url, new)
    assert row["status"] == "done" and terminal(row)["event_type"] == ev.COMMAND_COMPLETED


GATED_THEN_NEXT = GATED.replace(
    "worker_gated, path: tests/worker/gated", "worker_chain, path: tests/worker/chain"
)
GATED_THEN_NEXT += """    next: {arcs: [{step: after}]}
  - step: after
    tool: {kind: noop}
"""


async def test_a_stopping_worker_leases_nothing_new_to_itself(
    migrated_url: str, spawn_worker: Spawn, tmp_path: Path
) -> None:
    """A worker in its grace period still records and decides for the command it finishes, but the
    next step goes to the queue as ready, for the other workers, instead of to itself."""
    from noetl.runtime.orchestration import Orchestrator

    entry = await register(migrated_url, GATED_THEN_NEXT)
    pool = await db.pool(migrated_url, 1, 2)
    try:
        execution_id = await Orchestrator(pool).start(entry, {"dir": str(tmp_path), "token": "s"})
    finally:
        await pool.close()
    worker = spawn_worker(pools=["default"], grace_seconds=15)
    await eventually(lambda: _exists(tmp_path / "s.pid"), "the first step to start")
    worker.signal(signal.SIGTERM)
    await eventually(lambda: _logged(worker, "stopping: waiting up to"), "the grace period")
    (tmp_path / "gate").touch()
    assert await worker.exit_code() == 0

    from psycopg.rows import dict_row

    async with connection(migrated_url) as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT step, status, worker_id, recorded FROM noetl.command WHERE execution_id = %s ORDER BY seq",
            [execution_id],
        )
        found = await cur.fetchall()
    assert [(r["step"], r["status"], r["recorded"]) for r in found] == [
        ("start", "done", True),  # recorded by the stopping worker itself ...
        ("after", "ready", False),  # ... which left the next step to the queue
    ]
    assert found[1]["worker_id"] is None


async def test_sigterm_releases_a_command_still_running_after_the_grace_period(
    migrated_url: str, spawn_worker: Spawn, tmp_path: Path
) -> None:
    entry = await register(migrated_url, GATED)
    new = await enqueue(
        migrated_url, entry.catalog_id, "release", "start", [{"dir": str(tmp_path), "token": "r"}]
    )
    worker = spawn_worker(pools=["release"], grace_seconds=0.3)
    await eventually(lambda: _exists(tmp_path / "r.pid"), "the command to start")
    shell = int((tmp_path / "r.pid").read_text())

    worker.signal(signal.SIGTERM)

    assert await worker.exit_code() == 0
    [row] = await rows(migrated_url, new)
    assert (row["status"], row["attempt"], row["worker_id"], row["outcome"]) == ("ready", 0, None, None)
    assert not process_alive(shell)


async def test_a_cancelled_command_is_stopped_at_the_next_heartbeat(
    migrated_url: str, spawn_worker: Spawn, tmp_path: Path
) -> None:
    entry = await register(migrated_url, GATED)
    new = await enqueue(
        migrated_url, entry.catalog_id, "cancel", "start", [{"dir": str(tmp_path), "token": "x"}]
    )
    worker = spawn_worker(pools=["cancel"], concurrency=1, lease_seconds=5, heartbeat_seconds=0.2)
    await eventually(lambda: _exists(tmp_path / "x.pid"), "the command to start")
    shell = int((tmp_path / "x.pid").read_text())

    async with connection(migrated_url) as conn:
        assert await commands.cancel(conn, new[0].execution_id) == [new[0].command_id]

    await eventually(lambda: _gone(shell), "the cancelled command's process to stop")
    # Its one slot is free again: the next command runs (and the cancelled one was not reported).
    (tmp_path / "gate").touch()
    after = await enqueue(
        migrated_url, entry.catalog_id, "cancel", "start", [{"dir": str(tmp_path), "token": "y"}]
    )
    [done] = await settled(migrated_url, after)
    assert done["status"] == "done"
    [cancelled] = await rows(migrated_url, new)
    assert (cancelled["status"], cancelled["outcome"]) == ("cancelled", None)
    assert "lease lost" in worker.log()


async def test_credentials_from_the_store_reach_the_tool_and_are_redacted(
    migrated_url: str, spawn_worker: Spawn, tmp_path: Path
) -> None:
    key = crypto.new_key()
    secret = "s3cr3t-" + secrets.token_hex(8)
    async with connection(migrated_url) as conn:
        await credentials.put(
            conn,
            "api_token",
            "bearer",
            {"token": secret},
            cipher=crypto.Cipher(crypto.decode_key(key, "key")),
        )
        sealed = await (await conn.execute("SELECT data_encrypted FROM noetl.credential")).fetchone()
    assert sealed is not None and secret.encode() not in bytes(sealed[0])
    entry = await register(migrated_url, SECRET_USER)
    used = await enqueue(migrated_url, entry.catalog_id, "secrets", "start", [{"dir": str(tmp_path)}])
    broken = await enqueue(migrated_url, entry.catalog_id, "secrets", "broken", [{}])
    spawn_worker(pools=["secrets"], encryption_key_b64=key)

    found = await settled(migrated_url, used + broken)

    assert (tmp_path / "secret.txt").read_text() == secret
    assert found[0]["status"] == "done"
    assert found[0]["outcome"][0]["data"]["result"]["stdout"] == "token=***\n"
    assert secret not in json.dumps(found[0]["outcome"])
    assert found[1]["status"] == "failed"
    assert "no_such_credential" in terminal(found[1])["data"]["error"]["message"]


async def test_a_killed_worker_leaves_its_lease_to_expire_and_another_worker_completes_the_command(
    migrated_url: str, spawn_worker: Spawn, tmp_path: Path
) -> None:
    entry = await register(migrated_url, GATED)
    new = await enqueue(
        migrated_url, entry.catalog_id, "crash", "start", [{"dir": str(tmp_path), "token": "k"}]
    )
    doomed = spawn_worker(pools=["crash"], lease_seconds=1, heartbeat_seconds=0.25)
    await eventually(lambda: _exists(tmp_path / "k.pid"), "the command to start")
    shell = int((tmp_path / "k.pid").read_text())

    doomed.kill()
    kill_group(shell)  # the step's shell runs in its own session and would outlive the worker
    [row] = await rows(migrated_url, new)
    assert (row["status"], row["worker_id"], row["attempt"]) == ("leased", doomed.worker_id, 1)

    async def expired() -> bool:
        return bool((await rows(migrated_url, new))[0]["expired"])

    await eventually(expired, "the lease to expire")
    async with connection(migrated_url) as conn:
        assert await commands.reap(conn) == 1
    [row] = await rows(migrated_url, new)
    assert (row["status"], row["worker_id"]) == ("ready", None)

    (tmp_path / "gate").touch()
    survivor = spawn_worker(pools=["crash"])
    [row] = await settled(migrated_url, new)
    assert (row["status"], row["worker_id"], row["attempt"]) == ("done", survivor.worker_id, 2)
    assert terminal(row)["event_type"] == ev.COMMAND_COMPLETED
    assert (tmp_path / "ran.txt").read_text().split() == ["k"]


async def test_a_worker_reconnects_after_losing_its_connections_and_still_reports(
    migrated_url: str, spawn_worker: Spawn, tmp_path: Path
) -> None:
    entry = await register(migrated_url, GATED)
    new = await enqueue(
        migrated_url, entry.catalog_id, "flaky", "start", [{"dir": str(tmp_path), "token": "f"}]
    )
    app = f"noetl-test-{ids.new_id()}"
    # One slot and the default (20 s) heartbeat: while the command runs nothing else uses the pool, so
    # the report is what meets the dead connection.
    worker = spawn_worker(pools=["flaky"], env={"PGAPPNAME": app}, concurrency=1)
    await eventually(lambda: _exists(tmp_path / "f.pid"), "the command to start")

    async with connection(migrated_url) as conn:
        cur = await conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = %s",
            [app],
        )
        killed = await cur.fetchone()
    assert killed is not None and killed[0] >= 2  # the pool's connection(s) and the LISTEN connection
    (tmp_path / "gate").touch()

    [row] = await settled(migrated_url, new)
    assert (row["status"], row["attempt"], row["worker_id"]) == ("done", 1, worker.worker_id)
    later = await enqueue(
        migrated_url, entry.catalog_id, "flaky", "start", [{"dir": str(tmp_path), "token": "f2"}]
    )
    [row] = await settled(migrated_url, later)
    assert row["status"] == "done"
    # The pool replaced its dead connection before the report used it (noetl.store.db's check), so
    # the report needed no retry; the LISTEN connection, which the pool does not own, reconnected.
    assert "LISTEN noetl_commands,noetl_cancelled lost" in worker.log()


async def _exists(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0


async def _gone(pid: int) -> bool:
    return not process_alive(pid)


async def _logged(worker: WorkerProcess, text: str) -> bool:
    return text in worker.log()


CHILD = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: worker_child, path: tests/worker/child}
workload: {n: 1}
workflow:
  - step: start
    tool: {kind: python, input: {n: "{{ n }}"}, code: "result = {'doubled': n * 2}"}
    next: {arcs: [{step: end}]}
  - step: end
    tool: {kind: python, input: {d: "{{ start.doubled }}"}, code: "result = {'final': d}"}
"""

PARENT = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: worker_parent, path: tests/worker/parent}
workflow:
  - step: start
    tool: {kind: playbook, path: tests/worker/child, input: {n: 21}}
    next: {arcs: [{step: chosen}]}
  - step: chosen
    tool: {kind: playbook, path: tests/worker/child, version: 1, input: {n: 5}, return_step: start}
    next: {arcs: [{step: detached}]}
  - step: detached
    tool: {kind: playbook, path: tests/worker/child, async: true}
"""

ORPHAN = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: worker_orphan, path: tests/worker/orphan}
workflow:
  - step: start
    tool: {kind: playbook, path: tests/worker/nowhere}
"""


async def test_sub_playbooks_run_as_child_executions(migrated_url: str, spawn_worker: Spawn) -> None:
    from noetl.engine.state import fold
    from noetl.runtime.orchestration import Orchestrator
    from noetl.store import events, executions

    await register(migrated_url, CHILD)
    parent, orphan = await register(migrated_url, PARENT), await register(migrated_url, ORPHAN)
    pool = await db.pool(migrated_url, 1, 4)
    stop = asyncio.Event()
    orchestrator = Orchestrator(pool)
    serving = asyncio.create_task(_orchestrate(orchestrator, stop))
    try:
        spawn_worker(pools=["default"], concurrency=4)
        parent_id = await orchestrator.start(parent, {})
        orphan_id = await orchestrator.start(orphan, {})

        async def finished() -> list[Any]:
            async with connection(migrated_url) as conn:
                found = [await executions.get(conn, i) for i in (parent_id, orphan_id)]
            return found if all(row is not None and row.status != "RUNNING" for row in found) else []

        done, failed = await eventually(finished, "both executions to finish")
        async with connection(migrated_url) as conn:
            state = fold(await events.read(conn, parent_id))
            children = await executions.children(conn, parent_id)
            detached_row = await executions.get(conn, int(state.results["detached"]["execution_id"]))
    finally:
        stop.set()
        await serving
        await pool.close()

    assert done.status == "COMPLETED", done.error
    assert state.results["start"] == {"final": 42}
    assert state.results["chosen"] == {"doubled": 10}
    assert state.results["detached"]["status"] == "RUNNING"
    assert len(children) == 3 and int(state.results["detached"]["execution_id"]) in children
    assert detached_row is not None and detached_row.parent_execution_id == parent_id
    assert failed.status == "FAILED"
    assert "tests/worker/nowhere" in json.dumps(failed.error)


URGENT_PARENT = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: worker_urgent, path: tests/worker/urgent}
workflow:
  - step: start
    spec: {priority: 7}
    tool: {kind: playbook, path: tests/worker/child, input: {n: 2}}
"""

OWN_PRIORITY_CHILD = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: worker_own, path: tests/worker/own}
executor: {spec: {priority: 3}}
workflow:
  - step: start
    tool: {kind: noop}
"""

URGENT_PARENT_OF_OWN = URGENT_PARENT.replace(
    "worker_urgent, path: tests/worker/urgent", "worker_urgent_own, path: tests/worker/urgent_own"
).replace("tests/worker/child, input: {n: 2}", "tests/worker/own")


async def test_a_child_runs_at_the_priority_of_the_command_that_started_it(
    migrated_url: str, spawn_worker: Spawn
) -> None:
    """Unless the child's playbook sets executor.spec.priority: then its own wins."""
    from noetl.runtime.orchestration import Orchestrator
    from noetl.store import executions

    await register(migrated_url, CHILD)
    await register(migrated_url, OWN_PRIORITY_CHILD)
    urgent = await register(migrated_url, URGENT_PARENT)
    urgent_own = await register(migrated_url, URGENT_PARENT_OF_OWN)
    pool = await db.pool(migrated_url, 1, 2)
    try:
        orchestrator = Orchestrator(pool)
        parents = [await orchestrator.start(urgent, {}), await orchestrator.start(urgent_own, {})]
    finally:
        await pool.close()
    spawn_worker(pools=["default"], concurrency=4)

    async def finished() -> list[Any]:
        async with connection(migrated_url) as conn:
            found = [await executions.get(conn, i) for i in parents]
        return found if all(row is not None and row.status != "RUNNING" for row in found) else []

    rows_done = await eventually(finished, "both parents to finish")
    assert [row.status for row in rows_done] == ["COMPLETED", "COMPLETED"]
    priorities = []
    async with connection(migrated_url) as conn:
        for parent_id in parents:
            [child] = await executions.children(conn, parent_id)
            cur = await conn.execute(
                "SELECT DISTINCT priority FROM noetl.command WHERE execution_id = %s", [child]
            )
            priorities.append([row[0] for row in await cur.fetchall()])
    assert priorities == [[7], [3]]


async def _orchestrate(orchestrator: Any, stop: asyncio.Event) -> None:
    """Orchestration passes every 20 ms (the server's job, which these tests do not start)."""
    while not stop.is_set():
        await orchestrator.run_pass()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.02)


async def test_a_worker_runs_in_process_until_stopped(migrated_url: str) -> None:
    from noetl.worker import WorkerSettings, run_worker

    entry = await register(migrated_url, SHELL)
    settings = WorkerSettings(
        migrated_url, pools=("inproc",), concurrency=2, poll_seconds=0.2, grace_seconds=1
    )
    stop = asyncio.Event()
    running = asyncio.create_task(run_worker(settings, stop))
    new = await enqueue(migrated_url, entry.catalog_id, "inproc", "start", [{"n": 7}])
    [row] = await settled(migrated_url, new)
    assert (row["status"], row["worker_id"]) == ("done", settings.worker_id)
    assert row["outcome"][0]["data"]["result"]["stdout"] == "value-7\n"

    stop.set()
    await asyncio.wait_for(running, 10)
    async with connection(migrated_url) as conn:
        assert settings.worker_id not in {w["worker_id"] for w in await workers.list(conn)}


def test_settings_come_from_the_environment_and_are_checked() -> None:
    from noetl.errors import UsageError
    from noetl.worker import WorkerSettings

    env = {
        "NOETL_DATABASE_URL": "postgresql://db/noetl",
        "NOETL_WORKER_POOLS": "a, b",
        "NOETL_WORKER_CONCURRENCY": "3",
        "NOETL_WORKER_LEASE_SECONDS": "9",
    }
    settings = WorkerSettings.from_env(env, concurrency=5)
    assert (settings.pools, settings.concurrency, settings.lease_seconds) == (("a", "b"), 5, 9.0)
    assert settings.heartbeat_interval == 3.0
    assert settings.worker_id != WorkerSettings.from_env(env).worker_id
    assert WorkerSettings("postgresql://db", pools=("a,b", " c", "a")).pools == ("a", "b", "c")
    assert (settings.decide, settings.inline_results, settings.python_spin_seconds) == (True, 10_000, 0.0)
    tuned = {
        **env,
        "NOETL_WORKER_DECIDE": "false",
        "NOETL_INLINE_RESULTS": "50",
        "NOETL_WORKER_PYTHON_SPIN_SECONDS": "0.0002",
    }
    again = WorkerSettings.from_env(tuned)
    assert (again.decide, again.inline_results, again.python_spin_seconds) == (False, 50, 0.0002)
    for bad, reason in (
        ({**env, "NOETL_WORKER_DECIDE": "perhaps"}, "NOETL_WORKER_DECIDE"),
        ({**env, "NOETL_WORKER_PYTHON_SPIN_SECONDS": "-1"}, "python_spin_seconds"),
        ({**env, "NOETL_WORKER_CONCURRENCY": "many"}, "NOETL_WORKER_CONCURRENCY"),
        ({**env, "NOETL_WORKER_HEARTBEAT_SECONDS": "9"}, "shorter than lease_seconds"),
        ({**env, "NOETL_WORKER_POOLS": " , "}, "at least one pool"),
        ({"NOETL_WORKER_POOLS": "a"}, "NOETL_DATABASE_URL"),
    ):
        with pytest.raises(UsageError, match=reason):
            WorkerSettings.from_env(bad)
