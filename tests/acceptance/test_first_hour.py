"""A new user's first hour (issue 17, items 8-10): no silent surprises, short failure output, and the
small things - each checked through the real ``noetl`` command (subprocesses, a real server).

* ``--set``: an undeclared key warns (an error with ``--strict``); ``a.b=1`` sets a nested value;
* python tasks' memory cap is settable (``--python-memory-mb``) and documented;
* ``noetl validate`` finds python syntax errors (file line inside the YAML, step) and sub-playbook
  paths that do not exist when it can know;
* a failed run ends with its error, short, and no result dump; Ctrl-C names the running step; retry
  exhaustion says how many attempts ran;
* a directory given as a playbook is an ``error:`` line; shell completion is documented;
* on a server: ``/docs`` needs nothing from the internet, ``noetl status`` counts skipped steps,
  re-registering an unchanged file makes no version, ``noetl token list`` has a header;
* the embedded PostgreSQL is stopped by ``noetl db stop`` when a killed server left it running.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.cluster import Cluster, free_port, running_cluster, spawn, wait_until

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def noetl(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("NOETL_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "noetl", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=environment,
        check=False,
    )


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


NESTED = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: nested}
workload:
  region: us
  db: {host: localhost, port: 5432}
workflow:
  - step: start
    tool: {kind: python, input: {db: "{{ db }}", region: "{{ region }}"}, code: "result = {'db': db, 'region': region}"}
"""


# ---- item 8: --set, memory, validate ---------------------------------------------------------------


def test_set_of_an_undeclared_key_warns_and_strict_refuses_it(tmp_path: Path) -> None:
    file = write(tmp_path, "nested.yaml", NESTED)
    ran = noetl("run", str(file), "--set", "regoin=eu", "--json")
    assert ran.returncode == 0, ran.stderr
    assert "warning: --set regoin: the workload declares no key 'regoin'" in ran.stderr
    assert "did you mean 'region'?" in ran.stderr
    strict = noetl("run", str(file), "--set", "regoin=eu", "--strict")
    assert strict.returncode == 2
    assert "error:" in strict.stderr and "'regoin'" in strict.stderr and "(--strict)" in strict.stderr
    declared = noetl("run", str(file), "--set", "region=eu", "--strict", "--json")
    assert declared.returncode == 0 and "warning" not in declared.stderr, declared.stderr


def test_set_with_a_dotted_key_sets_a_nested_value_and_keeps_the_rest(tmp_path: Path) -> None:
    import json

    file = write(tmp_path, "nested.yaml", NESTED)
    ran = noetl("run", str(file), "--set", "db.port=5433", "--json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["final_result"] == {
        "db": {"host": "localhost", "port": 5433},
        "region": "us",
    }
    scalar = noetl("run", str(file), "--set", "region.x=1")
    assert scalar.returncode == 2 and "'region' is str, not a map" in scalar.stderr
    assert "db.port=5433" in (DOCS / "cli.md").read_text(encoding="utf-8")


def test_python_memory_cap_is_a_setting(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "mem.yaml",
        """
        apiVersion: noetl.io/v2
        kind: Playbook
        metadata: {name: mem}
        workflow:
          - step: start
            tool: {kind: python, code: "block = bytearray(300 * 1024 * 1024); result = len(block)"}
        """,
    )
    capped = noetl("run", str(file), "--python-memory-mb", "200")
    assert capped.returncode == 1
    assert "memory" in capped.stderr and "limit 200 MiB" in capped.stderr, capped.stderr
    by_env = noetl("run", str(file), env={"NOETL_PYTHON_MEMORY_MB": "200"})
    assert by_env.returncode == 1 and "limit 200 MiB" in by_env.stderr
    default = noetl("run", str(file), "--json")
    assert default.returncode == 0, default.stderr  # 300 MiB fits the 1024 MiB default
    language = (DOCS / "language.md").read_text(encoding="utf-8")
    assert "Default 1024 MiB" in language and "NOETL_PYTHON_MEMORY_MB" in language
    assert "NOETL_WORKER_PYTHON_MEMORY_MB" in (DOCS / "cli.md").read_text(encoding="utf-8")


BROKEN = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: broken}
workflow:
  - step: start
    tool:
      kind: python
      code: |
        x = 1
        if x
            result = {}
    next: {arcs: [{step: child}]}
  - step: child
    tool: {kind: playbook, path: children/missing.yaml}
    next: {arcs: [{step: by_path}]}
  - step: by_path
    tool: {kind: playbook, path: lib/nowhere}
    next: {arcs: [{step: one_line}]}
  - step: one_line
    tool: {kind: python, code: "result = (1"}
"""


def test_validate_finds_python_syntax_errors_and_missing_sub_playbooks(tmp_path: Path) -> None:
    file = write(tmp_path, "broken.yaml", BROKEN)
    ran = noetl("validate", str(file))
    assert ran.returncode == 2
    assert f"✗ {file}:10: step 'start': field 'code': python code does not compile" in ran.stderr
    assert "(line 2 of the code: 'if x')" in ran.stderr
    assert (
        f"✗ {file}:14:" in ran.stderr
        and "sub-playbook file 'children/missing.yaml' does not exist" in ran.stderr
    )
    assert f"✗ {file}:20: step 'one_line': field 'code'" in ran.stderr
    # a catalog path: a note without --catalog (it may be on the server), an error with one
    assert "note: step 'by_path': sub-playbook 'lib/nowhere'" not in ran.stdout  # invalid: no ✓ block
    catalog = tmp_path / "lib"
    catalog.mkdir()
    fixed = BROKEN.replace("if x\n", "if x:\n").replace('"result = (1"', '"result = (1)"')
    fixed = fixed.replace("children/missing.yaml", "broken.yaml")
    write(tmp_path, "fixed.yaml", fixed)
    noted = noetl("validate", str(tmp_path / "fixed.yaml"))
    assert noted.returncode == 0, noted.stderr
    assert "note: step 'by_path': sub-playbook 'lib/nowhere' is not among the playbooks" in noted.stdout
    strict = noetl("validate", "--catalog", str(catalog), str(tmp_path / "fixed.yaml"))
    assert strict.returncode == 2 and "sub-playbook 'lib/nowhere' is not among the playbooks" in strict.stderr
    write(
        catalog,
        "nowhere.yaml",
        "apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: nowhere, path: lib/nowhere}\nworkflow: [{step: start, tool: {kind: noop}}]\n",
    )
    found = noetl("validate", "--catalog", str(catalog), str(tmp_path / "fixed.yaml"))
    assert found.returncode == 0 and "note:" not in found.stdout, found.stdout + found.stderr


# ---- item 9: failure output --------------------------------------------------------------------------

BIG_RESULT_THEN_FAIL = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: fails}
workflow:
  - step: start
    tool: {kind: python, code: "result = {'rows': [{'i': i, 'name': 'row-%d' % i} for i in range(80)]}"}
    next: {arcs: [{step: boom}]}
  - step: boom
    tool: {kind: python, input: {rows: "{{ start.rows }}"}, code: "raise ValueError('bad row ' + str(len(rows)) + '\\\\n' * 40 + 'tail')"}
"""


def test_a_failed_run_ends_with_its_error_and_dumps_no_result(tmp_path: Path) -> None:
    file = write(tmp_path, "fails.yaml", BIG_RESULT_THEN_FAIL)
    ran = noetl("run", str(file))
    assert ran.returncode == 1
    assert "row-79" not in ran.stdout and "row-79" not in ran.stderr  # the last result is not dumped
    lines = ran.stderr.strip().splitlines()
    summary = next(i for i, line in enumerate(lines) if line.startswith("execution "))
    assert lines[summary + 1].startswith("error: step 'boom': python: ValueError: bad row 80"), ran.stderr
    assert lines[-1].endswith("more characters; the whole error is in --json]"), ran.stderr
    assert len(lines) - summary <= 7, ran.stderr  # the error: at most five lines and the note
    assert len(ran.stderr.splitlines()) < 20, ran.stderr
    assert "tail" in noetl("run", str(file), "--json").stdout  # the whole error is kept there


def test_retry_exhaustion_says_how_many_attempts_ran(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "retry.yaml",
        """
        apiVersion: noetl.io/v2
        kind: Playbook
        metadata: {name: retry}
        workflow:
          - step: start
            tool:
              kind: python
              code: "raise ConnectionError('down')"
              spec:
                policy:
                  rules:
                    - when: "{{ output.status == 'error' }}"
                      then: {do: retry, attempts: 3, backoff: fixed, delay: 0.01}
        """,
    )
    ran = noetl("run", str(file))
    assert ran.returncode == 1
    assert (
        "error: step 'start': python: ConnectionError: down (line 1) (gave up after 3 attempts)" in ran.stderr
    )


def test_ctrl_c_names_the_step_that_was_running(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    file = write(
        tmp_path,
        "nap.yaml",
        f"""
        apiVersion: noetl.io/v2
        kind: Playbook
        metadata: {{name: nap}}
        workflow:
          - step: start
            tool: {{kind: noop}}
            next: {{arcs: [{{step: nap}}]}}
          - step: nap
            tool: {{kind: shell, command: "touch {marker} && sleep 30"}}
        """,
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("NOETL_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "noetl", "run", str(file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    try:
        wait_until(marker.exists, "the shell step to start", timeout=60)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1
    assert "error: step 'nap': cancelled" in stderr, stderr
    assert "'None'" not in stderr


# ---- item 10: smaller things ----------------------------------------------------------------------------


def test_a_directory_given_as_a_playbook_is_an_error_line() -> None:
    for command in (["run", "examples"], ["validate", "examples"]):
        ran = noetl(*command, cwd=ROOT)
        assert ran.returncode == 2
        assert "'examples' is a directory, not a playbook file" in ran.stderr
        assert "Usage:" not in ran.stderr


def test_shell_completion_is_documented_and_works() -> None:
    cli_doc = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert "## Shell completion" in cli_doc
    line = next(line for line in cli_doc.splitlines() if "_NOETL_COMPLETE=bash_source noetl" in line)
    script = re.search(r'eval "\$\((.+?)\)"', line)
    assert script is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOETL_")}
    env["_NOETL_COMPLETE"] = "bash_source"
    source = subprocess.run(["noetl"], capture_output=True, text=True, env=env, check=False)
    assert "_noetl_completion()" in source.stdout
    env.update(_NOETL_COMPLETE="bash_complete", COMP_WORDS="noetl ca", COMP_CWORD="1")
    offered = subprocess.run(["noetl"], capture_output=True, text=True, env=env, check=False)
    assert "plain,catalog" in offered.stdout and "plain,cancel" in offered.stdout


@pytest.fixture(scope="module")
def cluster(pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(pg_database, tmp_path_factory.mktemp("first-hour"), workers=1) as running:
        yield running


def cli(cluster: Cluster, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return noetl(*args, cwd=cwd, env={k: v for k, v in cluster.env.items() if k.startswith("NOETL_")})


def test_api_docs_page_needs_nothing_from_the_internet(cluster: Cluster) -> None:
    headers = (
        {"Authorization": f"Bearer {cluster.env['NOETL_SERVICE_TOKEN']}"}
        if cluster.env.get("NOETL_SERVICE_TOKEN")
        else {}
    )
    with httpx.Client(base_url=cluster.url, headers=headers, timeout=10) as http:
        page = http.get("/docs")
        assert page.status_code == 200, page.text
        sources = re.findall(r'(?:src|href)=["\']([^"\']+)["\']', page.text)
        assert sources, page.text
        assert all(not s.startswith(("http://", "https://", "//")) for s in sources), sources
        for source in sources:
            asset = http.get(source)
            assert asset.status_code == 200 and len(asset.content) > 100, source
        assert "/openapi.json" in page.text and http.get("/openapi.json").status_code == 200
        assert http.get("/redoc").status_code == 404  # ReDoc loads from a CDN: not served


def test_status_counts_skipped_steps(cluster: Cluster) -> None:
    started = cli(
        cluster,
        "run",
        str(ROOT / "examples" / "orders.yaml"),
        "-r",
        "distributed",
        "--set",
        "region=eu",
        "--json",
    )
    assert started.returncode == 0, started.stderr
    import json

    execution_id = json.loads(started.stdout)["execution_id"]
    status = cli(cluster, "status", execution_id)
    assert status.returncode == 0, status.stderr
    assert "steps: 4 completed, 0 running, 0 failed, 1 skipped, of 5" in status.stdout, status.stdout


def test_registering_an_unchanged_file_makes_no_new_version(cluster: Cluster, tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "same.yaml",
        "apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: same, path: hour/same}\nworkflow: [{step: start, tool: {kind: noop}}]\n",
    )
    first = cli(cluster, "catalog", "register", str(file))
    assert first.returncode == 0 and first.stdout.startswith("registered hour/same version 1"), first.stderr
    again = cli(cluster, "catalog", "register", str(file))
    assert again.returncode == 0 and again.stdout.startswith("unchanged: hour/same version 1"), again.stdout
    listed = cli(cluster, "catalog", "list", "--path", "hour/same")
    assert len([line for line in listed.stdout.splitlines() if line.startswith("hour/same")]) == 1


def test_token_list_has_a_header(cluster: Cluster) -> None:
    created = cli(cluster, "token", "create", "--name", "hour", "--role", "viewer", "--path", "hour/*")
    assert created.returncode == 0, created.stderr
    listed = cli(cluster, "token", "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["NAME", "ROLE", "PATHS", "PREFIX", "STATE"]
    assert any(
        line.split()[:3] == ["hour", "viewer", "hour/*"] and line.endswith("active") for line in lines[1:]
    )


# ---- item 10: the embedded PostgreSQL does not outlive its users -------------------------------------


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: as root, pgserver runs PostgreSQL as another user who must reach it.
    base = Path(tempfile.mkdtemp(prefix="noetl-hour-"))
    base.chmod(0o755)
    try:
        yield base / "data"
    finally:
        noetl("db", "stop", env={"NOETL_DATA_DIR": str(base / "data")})
        shutil.rmtree(base, ignore_errors=True)


def test_embedded_postgres_stops_with_its_server_and_db_stop_stops_a_leftover(data_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOETL_")}
    port = free_port()
    env.update(
        NOETL_DATA_DIR=str(data_dir), NOETL_SERVER_PORT=str(port), NOETL_SERVER_URL=f"http://127.0.0.1:{port}"
    )
    logs = data_dir.parent
    pid_file = data_dir / "pg" / "postmaster.pid"

    def up(server: object) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code < 500
        except httpx.TransportError:
            return False

    server = spawn("server", ["server", "start"], env, logs)
    started = [server]
    try:
        wait_until(lambda: up(server), "the server's /health")
        assert pid_file.exists()
        server.terminate()  # SIGTERM: a clean exit releases the last claim, PostgreSQL stops
        server.reap()
        wait_until(
            lambda: not pid_file.exists(), "the embedded PostgreSQL to stop with its server", timeout=30
        )

        killed = spawn("server-2", ["server", "start"], env, logs)
        started.append(killed)
        wait_until(lambda: up(killed), "the second server's /health")
        killed.kill()  # SIGKILL: no clean-up, the embedded PostgreSQL keeps running
        killed.reap()
        assert pid_file.exists()
        stopped = noetl("db", "stop", env={"NOETL_DATA_DIR": str(data_dir)})
        assert stopped.returncode == 0 and "stopped the embedded PostgreSQL" in stopped.stdout, stopped.stderr
        assert not pid_file.exists()
        again = noetl("db", "stop", env={"NOETL_DATA_DIR": str(data_dir)})
        assert again.returncode == 0 and "is not running" in again.stdout
    finally:
        for process in started:
            process.terminate()
            process.reap()
