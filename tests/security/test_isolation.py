"""User code against the worker (issue 10, items 6 and 7), on real server and worker processes.

The worker runs as root (the machine's user) with ``--task-user noetl-task`` (made by
``scripts/task-user``, as ``.ci/run`` does), its credential key in a key file, its database URL and
the service token in its environment, and a server that wants the token on loopback too. A python
and a shell task then try what the attacker of item 6 did; tasks of two catalog scopes then try to
meet in a warm python child (item 7) and in each other's files.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.cluster import Cluster, running_cluster, wait_until

TOKEN = "isolation-service-token-77d1"
TASK_USER = "noetl-task"
PLANTED = "Planted-scope-secret-4417"
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def _task_user() -> None:
    """Create the task user (idempotent) the way .ci/run does; the worker must run as root here."""
    if os.geteuid() != 0:
        pytest.fail(
            "the isolation tests run the worker as root (as the CI machine does) to drop to a task user"
        )
    script = Path(__file__).resolve().parents[2] / "scripts" / "task-user"
    done = subprocess.run([str(script), TASK_USER, os.sys.executable], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def cluster(pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    _task_user()
    root = tmp_path_factory.mktemp("isolated")
    env = {
        "NOETL_SERVICE_TOKEN": TOKEN,
        "NOETL_WORKER_TASK_USER": TASK_USER,
        "NOETL_WORKER_PYTHON_WORKERS": "1",  # one warm child: scopes must not share it
        "NOETL_LOG_LEVEL": "info",
    }
    with running_cluster(pg_database, root, workers=1, env=env, insecure_loopback=False) as running:
        yield running


def run(cluster: Cluster, path: str, body: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    name = path.rsplit("/", 1)[-1]
    content = f"apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {{name: {name}, path: {path}}}\n{body}"
    url = cluster.url
    registered = httpx.post(
        f"{url}/api/catalog/register", json={"content": content}, headers=HEADERS, timeout=30
    )
    assert registered.status_code == 200, registered.text
    started = httpx.post(
        f"{url}/api/execute", json={"path": path, "payload": payload or {}}, headers=HEADERS, timeout=30
    )
    assert started.status_code == 200, started.text
    execution_id = started.json()["execution_id"]

    def finished() -> dict[str, Any] | None:
        found = httpx.get(f"{url}/api/executions/{execution_id}", headers=HEADERS, timeout=5).json()
        return found if found["status"] in TERMINAL else None

    summary: dict[str, Any] = wait_until(finished, f"execution of {path}")
    assert summary["status"] == "COMPLETED", summary
    return summary


def result_of(summary: dict[str, Any]) -> Any:
    result = summary["result"]
    return result.get("start", result) if isinstance(result, dict) and "start" in result else result


PROBE = r"""
import os, urllib.request, urllib.error
def attempt(action):
    try:
        action()
        return 'ok'
    except urllib.error.HTTPError as e:
        return e.code
    except Exception as e:
        return type(e).__name__
result = {
    'uid': os.getuid(),
    'environment': dict(os.environ),
    'key_file': attempt(lambda: open(key_file).read()),
    'worker_environ': attempt(lambda: open('/proc/%d/environ' % os.getppid(), 'rb').read()),
    'server_without_token': attempt(lambda: urllib.request.urlopen(server + '/api/executions', timeout=5)),
}
"""

SHELL_PROBE = (
    "id -u; env; cat {key} >/dev/null 2>&1 && echo KEY-READ || echo key-denied; "
    "cat /proc/$PPID/environ >/dev/null 2>&1 && echo WORKER-ENV-READ || echo worker-env-denied; "
    "pwd"
)


def test_user_code_cannot_reach_the_workers_secrets(cluster: Cluster) -> None:
    """Item 6: a clean environment, another user, no key file, no token for the server."""
    key_file = str(Path(cluster.env["NOETL_DATA_DIR"]) / "credentials.key")
    assert Path(key_file).is_file()  # the worker's key really is in this file
    inputs = "{key_file: '{{ workload.key_file }}', server: '{{ workload.server }}'}"
    body = python_body(PROBE, inputs)
    found = result_of(run(cluster, "iso/probe", body, {"key_file": key_file, "server": cluster.url}))
    environment = found["environment"]
    assert found["uid"] != 0
    assert not [name for name in environment if name.startswith("NOETL_")], environment
    assert TOKEN not in json.dumps(environment) and cluster.database_url not in json.dumps(environment)
    assert set(environment) <= {
        "PATH",
        "LANG",
        "LANGUAGE",
        "LC_ALL",
        "LC_CTYPE",
        "TZ",
        "PYTHONPATH",
        "HOME",
        "TMPDIR",
    }
    assert found["key_file"] == "PermissionError"
    assert found["worker_environ"] == "PermissionError"
    assert found["server_without_token"] == 401

    shell = f"workflow:\n  - step: start\n    tool: {{kind: shell, command: {json.dumps(SHELL_PROBE.format(key=key_file))}}}\n"
    out = result_of(run(cluster, "iso/shell_probe", shell))["stdout"]
    lines = out.splitlines()
    assert lines[0] != "0"  # not root
    assert "NOETL_" not in out and TOKEN not in out and cluster.database_url not in out
    assert "key-denied" in lines and "worker-env-denied" in lines
    assert lines[-1] != str(cluster.root)  # a private directory, not the worker's


PATCH = r"""
import json
captured = []
original = json.loads
def spy(text, *args, **kwargs):
    captured.append(text if isinstance(text, str) else bytes(text).decode('utf-8', 'replace'))
    return original(text, *args, **kwargs)
json.loads = spy
json.captured = captured
result = {'patched': True}
"""
VICTIM = "import os\nresult = {'pid': os.getpid(), 'seen': len(secret)}"
READ = "import json, os\nresult = {'pid': os.getpid(), 'captured': list(getattr(json, 'captured', []))}"


def python_body(code: str, inputs: str = "{}") -> str:
    return (
        f"workflow:\n  - step: start\n    tool: {{kind: python, input: {inputs}, code: {json.dumps(code)}}}\n"
    )


def test_a_warm_python_child_never_serves_two_scopes(cluster: Cluster) -> None:
    """Item 7: a child patched by one scope's task never sees another scope's input."""
    run(cluster, "other/patch", python_body(PATCH))
    victim = result_of(
        run(cluster, "finance/victim", python_body(VICTIM, "{secret: '{{ workload.s }}'}"), {"s": PLANTED})
    )
    again = result_of(
        run(cluster, "finance/victim_again", python_body(VICTIM, "{secret: '{{ workload.s }}'}"), {"s": "x"})
    )
    read = result_of(run(cluster, "other/read", python_body(READ)))
    assert PLANTED not in json.dumps(read["captured"]), read
    assert read["pid"] != victim["pid"]
    assert again["pid"] == victim["pid"]  # within one scope the warm child is reused


def test_a_task_cannot_read_another_tasks_files(cluster: Cluster) -> None:
    """Item 6: private directories per task (python and shell)."""
    write = "import os\nopen('private.txt', 'w').write('mine')\nresult = {'path': os.path.abspath('private.txt'), 'tmp': os.environ.get('TMPDIR')}"
    python_file = result_of(run(cluster, "finance/write", python_body(write)))
    shell = "workflow:\n  - step: start\n    tool: {kind: shell, command: 'echo mine > private.txt; echo $PWD/private.txt'}\n"
    shell_file = result_of(run(cluster, "finance/shell_write", shell))["stdout"].strip()
    read = (
        "def attempt(path):\n    try:\n        return open(path).read()\n    except Exception as e:\n"
        "        return type(e).__name__\nresult = [attempt(p) for p in paths]"
    )
    found = result_of(
        run(
            cluster,
            "other/read_files",
            python_body(read, "{paths: '{{ workload.paths }}'}"),
            {"paths": [python_file["path"], shell_file]},
        )
    )
    assert python_file["tmp"] and python_file["path"].startswith(python_file["tmp"])
    assert "mine" not in found, found
