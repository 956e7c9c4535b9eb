"""The distributed runtime driven through the ``noetl`` command, as a user runs it.

One real ``noetl server start`` process on a free port (PostgreSQL: this module's fresh
``pg_database``) and two ``noetl worker start`` processes serve the whole module. The tests then
run the CLI as subprocesses: catalog register/list/get, exec + status + events, cancel and Ctrl-C,
credentials, ``db status``, and ``noetl run --runtime distributed`` whose outcome must equal the
local runtime's for the same playbook (status, steps, results, variables, error, exit code).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from support.cluster import free_port, running_cluster, wait_until

DEADLINE = 30.0
"""Seconds any awaited condition may take (generous: CI machines are slow)."""

COMPARED = ("status", "playbook_path", "executed_steps", "step_results", "final_result", "variables", "error")


def playbook(path: str, body: str) -> str:
    head = f"apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {{name: {path.rsplit('/', 1)[-1]}, path: {path}}}\n"
    return head + textwrap.dedent(body).lstrip("\n")


CHAIN = playbook(
    "acceptance/chain",
    """
    workload: {base: 2}
    workflow:
      - step: start
        tool: {kind: python, input: {x: "{{ base }}"}, code: "result = {'value': x * 10}"}
        set: {ctx.first: "{{ output.data.value }}"}
        next: {arcs: [{step: double}]}
      - step: double
        tool: {kind: python, input: {v: "{{ start.value }}"}, code: "result = v * 2"}
        next: {arcs: [{step: end}]}
      - step: end
        tool: {kind: python, input: {d: "{{ double }}", f: "{{ first }}"}, code: "result = d + f"}
        set: {ctx.total: "{{ output.data }}"}
    """,
)

LOOP = playbook(
    "acceptance/loop",
    """
    workload: {items: [1, 2, 3, 4, 5]}
    workflow:
      - step: start
        loop:
          in: "{{ items }}"
          iterator: item
          spec: {mode: parallel, max_in_flight: 3}
        tool: {kind: python, input: {n: "{{ iter.item }}"}, code: "result = n * n"}
        next: {arcs: [{step: each}]}
      - step: each
        loop: {in: "{{ start.results }}", iterator: square}
        tool: {kind: python, input: {s: "{{ iter.square }}"}, code: "result = s + 1"}
        next: {arcs: [{step: end}]}
      - step: end
        tool: {kind: python, input: {all: "{{ each.results }}"}, code: "result = sum(all)"}
    """,
)

ROUTING = playbook(
    "acceptance/routing",
    """
    workload: {limit: 10}
    workflow:
      - step: start
        tool: {kind: python, input: {limit: "{{ limit }}"}, code: "result = {'n': limit * 2}"}
        next:
          spec: {mode: exclusive}
          arcs:
            - {step: risky, when: "{{ start.n > 5 }}", set: {ctx.branch: risky}}
            - {step: end, set: {ctx.branch: direct}}
      - step: risky
        tool: {kind: python, code: "raise ValueError('no stock for item 7')"}
        next:
          arcs:
            - {step: end}
            - step: recover
              when: "{{ output.status == 'error' }}"
              set: {ctx.note: "{{ output.error.message }}"}
      - step: recover
        tool: {kind: python, input: {note: "{{ note }}"}, code: "result = {'recovered': True, 'note': note}"}
      - step: end
        tool: {kind: noop}
    """,
)

FAILURE = playbook(
    "acceptance/failure",
    """
    workflow:
      - step: start
        tool: {kind: python, code: "result = {'ok': True}"}
        next: {arcs: [{step: broken}]}
      - step: broken
        tool: {kind: python, code: "raise RuntimeError('the python task failed on purpose')"}
        next: {arcs: [{step: never}]}
      - step: never
        tool: {kind: noop}
    """,
)

CHILD = playbook(
    "acceptance/lib/child",
    """
    workload: {who: nobody}
    workflow:
      - step: start
        tool: {kind: python, input: {who: "{{ who }}"}, code: "result = {'greeting': 'hello ' + who}"}
    """,
)

PARENT = playbook(
    "acceptance/parent",
    """
    workflow:
      - step: start
        tool: {kind: playbook, path: acceptance/lib/child, input: {who: parent}}
        next: {arcs: [{step: end}]}
      - step: end
        tool: {kind: python, input: {g: "{{ start.greeting }}"}, code: "result = g.upper()"}
    """,
)


def long_playbook(path: str, started: Path) -> str:
    return playbook(
        path,
        f"""
        workflow:
          - step: start
            tool: {{kind: shell, command: "touch {started}; sleep 60"}}
        """,
    )


# ---- the cluster ------------------------------------------------------------------------------------


@dataclass
class Ran:
    """What a finished ``noetl`` command left: exit code, stdout, stderr."""

    returncode: int
    stdout: str
    stderr: str


@dataclass
class Cluster:
    url: str
    database_url: str
    env: dict[str, str]
    root: Path

    def noetl(self, *args: str, env: dict[str, str] | None = None, process: bool = False) -> Ran:
        """Run ``noetl ARGS`` against this cluster: in this process through click's test runner (fast),
        or with ``process`` as a real ``python -m noetl`` subprocess."""
        environment = {**self.env, **(env or {})}
        if process:
            done = subprocess.run(
                [sys.executable, "-m", "noetl", *args],
                capture_output=True,
                text=True,
                timeout=90,
                env=environment,
                cwd=self.root,
            )
            return Ran(done.returncode, done.stdout, done.stderr)
        from click.testing import CliRunner

        from noetl.cli.main import cli

        overrides: dict[str, str | None] = {k: None for k in os.environ if k.startswith("NOETL_")}
        overrides.update({k: v for k, v in environment.items() if k.startswith("NOETL_")})
        result = CliRunner().invoke(cli, list(args), env=overrides, catch_exceptions=False)
        return Ran(result.exit_code, result.stdout, result.stderr)

    def ok(self, *args: str) -> str:
        proc = self.noetl(*args)
        assert proc.returncode == 0, f"noetl {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}"
        return proc.stdout

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path


@pytest.fixture(scope="module")
def cluster(pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cli-distributed")
    # As users get it: the server wants its token from loopback clients too; the CLI finds the
    # service.token the server created in NOETL_DATA_DIR (no NOETL_SERVICE_TOKEN is set).
    with running_cluster(pg_database, root, insecure_loopback=False) as running:
        found = Cluster(running.url, pg_database, running.env, root)
        wait_until(lambda: len(json.loads(found.ok("worker", "list", "--json"))) == 2, "two workers")
        yield found


# ---- catalog ----------------------------------------------------------------------------------------


def test_catalog_register_list_and_get(cluster: Cluster) -> None:
    file = cluster.write("catalog/chain.yaml", CHAIN.replace("acceptance/chain", "acceptance/catalog"))
    first = cluster.ok("catalog", "register", str(file))
    assert first.startswith("registered acceptance/catalog version 1 (catalog_id ")
    again = cluster.ok("catalog", "register", str(file))  # the same text: no new version
    assert again.startswith("unchanged: acceptance/catalog version 1 (catalog_id ")
    original = file.read_text()
    file.write_text(original + "# edited\n")
    second = json.loads(cluster.ok("catalog", "register", str(file), "--json"))
    assert (
        second["path"] == "acceptance/catalog" and second["version"] == 2 and second["catalog_id"].isdigit()
    )
    assert second["unchanged"] is False

    entries = json.loads(cluster.ok("catalog", "list", "--json", "--path", "acceptance/catalog"))
    assert sorted(e["version"] for e in entries) == [1, 2]
    assert all("content" not in e for e in entries)
    table = cluster.ok("catalog", "list")
    assert table.splitlines()[0].split() == ["PATH", "VERSION", "CATALOG_ID", "CREATED_AT"]
    assert "acceptance/catalog" in table

    assert cluster.ok("catalog", "get", "acceptance/catalog") == file.read_text()
    entry = json.loads(cluster.ok("catalog", "get", "acceptance/catalog", "--version", "1", "--json"))
    assert entry["version"] == 1 and entry["content"] == original


def test_register_invalid_playbook_names_file_and_line(cluster: Cluster) -> None:
    bad = cluster.write(
        "catalog/bad.yaml", playbook("acceptance/bad", "workflow:\n  - step: start\n    tool: {kind: nope}\n")
    )
    proc = cluster.noetl("catalog", "register", str(bad))
    assert proc.returncode == 2
    assert f"{bad}:6:" in proc.stderr and "unknown tool kind 'nope'" in proc.stderr
    assert "acceptance/bad" not in cluster.ok("catalog", "list")


def test_missing_things_are_errors_with_the_servers_reason(cluster: Cluster) -> None:
    proc = cluster.noetl("catalog", "get", "acceptance/nothing")
    assert proc.returncode == 1 and "error: catalog entry acceptance/nothing" in proc.stderr
    proc = cluster.noetl("exec", "acceptance/nothing")
    assert proc.returncode == 1 and "not found in the catalog" in proc.stderr
    proc = cluster.noetl("status", "12345")
    assert proc.returncode == 1 and "execution 12345 not found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unreachable_server_says_how_to_start_it(cluster: Cluster) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    proc = cluster.noetl("executions", "list", "--server-url", dead, process=True)
    assert proc.returncode == 1
    assert f"cannot reach the NoETL server at {dead}; start it with `noetl server start`" in proc.stderr


# ---- exec, status, events ---------------------------------------------------------------------------


def test_exec_status_and_events(cluster: Cluster) -> None:
    cluster.ok("catalog", "register", str(cluster.write("exec/chain.yaml", CHAIN)))
    execution_id = cluster.ok("exec", "acceptance/chain", "--payload", '{"base": 3}').strip()
    assert execution_id.isdigit()

    followed = cluster.ok("events", execution_id, "--follow", "--json")
    events = [json.loads(line) for line in followed.splitlines()]
    assert events[0]["event_type"] == "playbook.initialized"
    assert events[-1]["event_type"] == "playbook.completed"
    assert [e["event_id"] for e in events] == list(range(1, len(events) + 1))
    assert {e["execution_id"] for e in events} == {execution_id}

    found = json.loads(cluster.ok("status", execution_id, "--json"))
    assert found["status"] == "COMPLETED" and found["result"] == 90
    assert found["progress"]["completed_steps"] == 3
    human = cluster.ok("status", execution_id)
    assert human.startswith(f"execution {execution_id} COMPLETED")

    lines = cluster.ok("events", execution_id, "--type", "step.enter").splitlines()
    assert [line.split()[3] for line in lines] == ["start", "double", "end"]
    later = [
        json.loads(line) for line in cluster.ok("events", execution_id, "--since", "3", "--json").splitlines()
    ]
    assert later[0]["event_id"] == 4 and len(later) == len(events) - 3

    listed = json.loads(cluster.ok("executions", "list", "--json", "--status", "completed"))
    assert execution_id in [e["execution_id"] for e in listed]
    assert all(e["status"] == "COMPLETED" for e in listed)


def test_exec_with_set_overrides_workload(cluster: Cluster) -> None:
    cluster.ok("catalog", "register", str(cluster.write("exec/chain.yaml", CHAIN)))
    started = json.loads(cluster.ok("exec", "acceptance/chain", "--set", "base=5", "--json"))
    execution_id = started["execution_id"]
    assert started["status"] == "RUNNING"
    last = cluster.ok("events", execution_id, "--follow").splitlines()[-1]
    assert "playbook.completed" in last
    found = json.loads(cluster.ok("status", execution_id, "--json"))
    assert found["status"] == "COMPLETED" and found["result"] == 150


# ---- run --runtime distributed ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "args", "code"),
    [
        ("chain", CHAIN, ["--set", "base=4"], 0),
        ("loop", LOOP, [], 0),
        ("routing", ROUTING, [], 0),
        ("failure", FAILURE, [], 1),
    ],
)
def test_distributed_run_gives_the_local_outcome(
    cluster: Cluster, name: str, text: str, args: list[str], code: int
) -> None:
    file = cluster.write(f"run/{name}.yaml", text)
    outcomes, logs = {}, {}
    for runtime in ("local", "distributed"):
        events_file = cluster.root / f"run/{name}.{runtime}.jsonl"
        proc = cluster.noetl(
            "run", str(file), "--runtime", runtime, "--json", "--events", str(events_file), *args
        )
        assert proc.returncode == code, f"{runtime}: {proc.stderr}"
        outcomes[runtime] = json.loads(proc.stdout)
        logs[runtime] = [json.loads(line) for line in events_file.read_text().splitlines()]
    local, remote = outcomes["local"], outcomes["distributed"]
    assert set(remote) == set(local)
    assert {key: remote[key] for key in COMPARED} == {key: local[key] for key in COMPARED}
    assert remote["execution_id"] != local["execution_id"]

    log = logs["distributed"]
    assert set(log[0]) == set(logs["local"][0])
    assert log[0]["event_type"] == "playbook.initialized"
    assert log[-1]["event_type"] == f"playbook.{local['status'].lower()}"
    assert {e["execution_id"] for e in log} == {remote["execution_id"]}


def test_distributed_routing_outcome_in_detail(cluster: Cluster) -> None:
    """Not only equal to local: the error arc really ran (guards against both runtimes being wrong)."""
    file = cluster.write("run/routing.yaml", ROUTING)
    outcome = json.loads(cluster.ok("run", str(file), "-r", "distributed", "--json"))
    assert outcome["status"] == "COMPLETED"
    assert outcome["executed_steps"] == ["start", "risky", "recover"]
    assert outcome["variables"]["branch"] == "risky"
    assert "no stock for item 7" in outcome["variables"]["note"]


def test_distributed_failure_exit_code_and_error(cluster: Cluster) -> None:
    file = cluster.write("run/failure.yaml", FAILURE)
    proc = cluster.noetl("run", str(file), "--runtime", "distributed", process=True)
    assert proc.returncode == 1
    assert "FAILED" in proc.stderr and "the python task failed on purpose" in proc.stderr
    assert "broken" in proc.stderr


def test_distributed_run_registers_sub_playbooks(cluster: Cluster) -> None:
    cluster.write("sub/child.yaml", CHILD)
    cluster.write(
        "sub/unrelated.yaml",
        playbook("acceptance/unrelated", "workflow:\n  - step: start\n    tool: {kind: noop}\n"),
    )
    parent = cluster.write("sub/parent.yaml", PARENT)
    events_file = cluster.root / "sub/events.jsonl"
    proc = cluster.noetl("run", str(parent), "-r", "distributed", "--json", "--events", str(events_file))
    assert proc.returncode == 0, proc.stderr
    outcome = json.loads(proc.stdout)
    local = json.loads(cluster.ok("run", str(parent), "--json"))
    assert {k: outcome[k] for k in COMPARED} == {k: local[k] for k in COMPARED}
    assert outcome["final_result"] == "HELLO PARENT"

    paths = {e["path"] for e in json.loads(cluster.ok("catalog", "list", "--json"))}
    assert {"acceptance/parent", "acceptance/lib/child"} <= paths
    assert "acceptance/unrelated" not in paths
    log = [json.loads(line) for line in events_file.read_text().splitlines()]
    child_inits = [
        e
        for e in log
        if e["event_type"] == "playbook.initialized" and e["execution_id"] != outcome["execution_id"]
    ]
    assert len(child_inits) == 1 and child_inits[0]["data"]["parent_execution_id"] == outcome["execution_id"]

    # unchanged files are not registered again
    cluster.ok("run", str(parent), "-r", "distributed", "--json")
    versions = [
        e["version"]
        for e in json.loads(cluster.ok("catalog", "list", "--json", "--path", "acceptance/lib/child"))
    ]
    assert versions == [1]


def test_distributed_run_of_invalid_playbook_exits_2(cluster: Cluster) -> None:
    bad = cluster.write(
        "run/bad.yaml", playbook("acceptance/badrun", "workflow:\n  - step: start\n    tool: {kind: nope}\n")
    )
    proc = cluster.noetl("run", str(bad), "--runtime", "distributed", "--json", process=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert f"{bad}:6:" in proc.stderr


# ---- cancel -----------------------------------------------------------------------------------------


def test_cancel_running_execution(cluster: Cluster) -> None:
    started = cluster.root / "cancel-started"
    cluster.ok(
        "catalog",
        "register",
        str(cluster.write("cancel/long.yaml", long_playbook("acceptance/long", started))),
    )
    execution_id = cluster.ok("exec", "acceptance/long").strip()
    wait_until(started.exists, "the shell task to start")
    running = json.loads(cluster.ok("executions", "list", "--status", "running", "--json"))
    assert execution_id in [e["execution_id"] for e in running]

    answer = cluster.ok("cancel", execution_id, "--reason", "stopped by the test")
    assert answer.startswith(f"cancel requested for execution {execution_id}")
    events = [
        json.loads(line) for line in cluster.ok("events", execution_id, "--follow", "--json").splitlines()
    ]
    assert events[-1]["event_type"] == "playbook.cancelled"
    assert json.loads(cluster.ok("status", execution_id, "--json"))["status"] == "CANCELLED"

    again = cluster.noetl("cancel", execution_id)
    assert again.returncode == 1 and "already finished (CANCELLED)" in again.stderr


def test_ctrl_c_cancels_a_distributed_run(cluster: Cluster) -> None:
    started = cluster.root / "ctrl-c-started"
    file = cluster.write("cancel/ctrl_c.yaml", long_playbook("acceptance/ctrl_c", started))
    proc = subprocess.Popen(
        [sys.executable, "-m", "noetl", "run", str(file), "--runtime", "distributed", "--json"],
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: started.exists() or proc.poll() is not None, "the shell task to start")
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, stderr
    outcome = json.loads(stdout)
    assert outcome["status"] == "CANCELLED"
    assert "cancelling execution" in stderr


# ---- credentials and the database -------------------------------------------------------------------


def test_credentials_import_list_get_and_use(cluster: Cluster) -> None:
    creds = cluster.write(
        "creds/creds.json",
        json.dumps(
            {
                "shop_api": {"type": "bearer", "data": {"token": "secret-token-123"}},
                "other": {"type": "basic", "data": {"username": "u", "password": "p"}},
            }
        ),
    )
    assert cluster.ok("credential", "import", str(creds)).startswith("imported 2 credential(s)")
    listed = json.loads(cluster.ok("credential", "list", "--json"))
    assert {c["name"]: c["type"] for c in listed}.items() >= {"shop_api": "bearer", "other": "basic"}.items()
    assert "secret-token-123" not in json.dumps(listed)
    assert "shop_api" in cluster.ok("credential", "list", "--type", "bearer")

    plain = json.loads(cluster.ok("credential", "get", "shop_api"))
    assert plain["name"] == "shop_api" and "data" not in plain
    full = json.loads(cluster.ok("credential", "get", "shop_api", "--include-data"))
    assert full["data"] == {"token": "secret-token-123"}

    uses = cluster.write(
        "creds/uses.yaml",
        playbook(
            "acceptance/uses_credential",
            """
            keychain:
              - {name: shop, kind: credential, credential: shop_api}
            workflow:
              - step: start
                tool: {kind: python, input: {token: "{{ keychain.shop.token }}"}, code: "result = {'length': len(token)}"}
            """,
        ),
    )
    outcome = json.loads(cluster.ok("run", str(uses), "-r", "distributed", "--json"))
    assert outcome["status"] == "COMPLETED" and outcome["final_result"] == {"length": 16}

    assert cluster.ok("credential", "delete", "other").strip() == "deleted credential other"
    gone = cluster.noetl("credential", "get", "other")
    assert gone.returncode == 1 and "credential 'other' not found" in gone.stderr


def test_db_status_and_migrate(cluster: Cluster) -> None:
    report = json.loads(cluster.ok("db", "status", "--json"))
    assert report["current"] == report["latest"] >= 1 and report["pending"] == []
    assert cluster.ok("db", "migrate").strip() == "the schema is up to date"
    human = cluster.ok("db", "status", "--database-url", cluster.database_url)
    assert human.startswith(f"schema version {report['latest']} of {report['latest']}")


def test_fresh_database_status_pending_then_init(cluster: Cluster) -> None:
    import psycopg

    parts = urlsplit(cluster.database_url)
    name = parts.path.strip("/") + "_fresh"
    fresh = urlunsplit(parts._replace(path="/" + name))
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        pending = cluster.noetl("db", "status", "--json", env={"NOETL_DATABASE_URL": fresh})
        assert pending.returncode == 1 and json.loads(pending.stdout)["current"] == 0
        init = cluster.noetl("db", "init", env={"NOETL_DATABASE_URL": fresh})
        assert init.returncode == 0 and init.stdout.startswith("database ready: schema version")
        assert cluster.noetl("db", "status", env={"NOETL_DATABASE_URL": fresh}).returncode == 0
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_worker_list_shows_both_workers(cluster: Cluster) -> None:
    table = cluster.ok("worker", "list")
    assert table.splitlines()[0].split() == ["WORKER_ID", "POOLS", "STATUS", "CAPACITY", "HEARTBEAT"]
    workers = json.loads(cluster.ok("worker", "list", "--json"))
    assert sorted(w["name"] for w in workers) == ["w1", "w2"]
    assert all(w["pools"] == ["default"] and w["capacity"] == 4 for w in workers)


# ---- the local path stays light ---------------------------------------------------------------------

HEAVY = (
    "httpx",
    "psycopg",
    "fastapi",
    "uvicorn",
    "noetl.server",
    "noetl.worker",
    "noetl.store",
    "noetl.cli.client",
)


def test_local_run_imports_nothing_of_the_distributed_runtime(tmp_path: Path) -> None:
    file = tmp_path / "noop.yaml"
    file.write_text(playbook("acceptance/noop", "workflow:\n  - step: start\n    tool: {kind: noop}\n"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOETL_")}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "noetl", "run", str(file), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "COMPLETED"
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "noetl.cli.main" in imported  # the probe sees our own modules
    assert sorted(m for m in imported if m.startswith(HEAVY)) == []


def test_results_keep_their_key_order_on_both_runtimes(cluster: Cluster) -> None:
    """Objects come back with their keys in the order they were written, as from the local runtime."""
    text = playbook(
        "acceptance/key_order",
        """
        workload: {zeta: 1, alpha: 2, mid: 3}
        workflow:
          - step: start
            tool:
              kind: python
              input: {w: "{{ workload }}"}
              code: "result = {'b': 1, 'a': 2, 'ccc': {'z': 1, 'y': [{'q': 1, 'p': 2}]}, 'w': w}"
        """,
    )
    file = cluster.write("run/key_order.yaml", text)
    keys = {}
    for runtime in ("local", "distributed"):
        proc = cluster.noetl("run", str(file), "--runtime", runtime, "--json")
        assert proc.returncode == 0, proc.stderr
        final = json.loads(proc.stdout)["final_result"]
        keys[runtime] = (list(final), list(final["ccc"]), list(final["ccc"]["y"][0]), list(final["w"]))
    assert keys["local"] == (["b", "a", "ccc", "w"], ["z", "y"], ["q", "p"], ["zeta", "alpha", "mid"])
    assert keys["distributed"] == keys["local"]


def test_a_step_no_live_worker_can_take_is_reported_not_silently_waited_for(cluster: Cluster) -> None:
    """The module's workers serve pool 'default' with no resources: a step for pool 'gpu', and one
    needing a worker resource nobody offers, are stalls - `noetl status` says why, and
    `noetl run --runtime distributed` warns while it waits."""
    text = playbook(
        "acceptance/stalled",
        """
        workflow:
          - step: start
            spec: {pool: gpu}
            tool: {kind: noop}
        """,
    )
    file = cluster.write("run/stalled.yaml", text)
    env = {**os.environ, **cluster.env}
    proc = subprocess.Popen(
        [sys.executable, "-m", "noetl", "run", str(file), "--runtime", "distributed", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cluster.root,
    )
    try:
        assert proc.stderr is not None
        warning = ""
        lines: list[str] = []
        while "is waiting" not in warning:
            line = proc.stderr.readline()
            assert line, f"the run ended without a warning; stderr:\n{''.join(lines)}"
            lines.append(line)
            warning = line if "is waiting" in line else ""
        assert "step 'start'" in warning and "no live worker serves pool 'gpu'" in warning
        executions = json.loads(cluster.ok("executions", "list", "--json"))
        [running] = [e for e in executions if e["path"] == "acceptance/stalled" and e["status"] == "RUNNING"]
        shown = cluster.ok("status", running["execution_id"])
        assert "waiting: step 'start'" in shown and "noetl worker start --pool gpu" in shown
    finally:
        proc.send_signal(signal.SIGINT)  # cancels the execution, then exits
        proc.communicate(timeout=60)
    assert proc.returncode == 1

    needs = playbook(
        "acceptance/stalled_resource",
        """
        workflow:
          - step: start
            spec: {resources: {tpu: 1}}
            tool: {kind: noop}
        """,
    )
    cluster.ok("catalog", "register", str(cluster.write("run/stalled_resource.yaml", needs)))
    execution_id = cluster.ok("exec", "acceptance/stalled_resource").strip().split()[-1]

    def stalled() -> list[dict[str, object]]:
        found: list[dict[str, object]] = json.loads(cluster.ok("status", execution_id, "--json"))["stalled"]
        return found

    [item] = wait_until(stalled, "the resource stall to be reported", DEADLINE)
    assert item["step"] == "start" and item["pool"] == "default"
    assert "needs tpu=1" in str(item["reasons"]) and "noetl resource set tpu N" in str(item["reasons"])
    cluster.ok("cancel", execution_id)
