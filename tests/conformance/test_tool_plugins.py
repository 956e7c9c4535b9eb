"""The open tool registry: a third-party tool package, installed from ``tests/plugins/echo``, runs
on both runtimes, and ``noetl validate``/``schema``/``tool`` and ``GET /api/tools`` know it.

The package is installed the way pip leaves a wheel (package + ``.dist-info`` with its
``noetl.tools`` entry point), in a directory put on ``PYTHONPATH`` of every process: the CLI,
the server (which checks playbooks at registration) and the workers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.toolcluster import private_cluster

PLUGIN = str(Path(__file__).resolve().parents[1] / "plugins" / "echo")
ENV = {"PYTHONPATH": PLUGIN}

ECHO = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: echo_demo}
workload: {word: hi}
workflow:
  - step: start
    tool:
      kind: echo
      message: "{{ workload.word }}"
      repeat: 3
      auth: echo_cred
"""
CREDS = "echo_cred: {type: echo_key, data: {key: s3cr3t-echo}}\n"


@pytest.fixture(scope="module")
def distributed_cluster(pg_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with private_cluster(pg_server_url, tmp_path_factory.mktemp("plugin-cluster"), ENV) as cluster:
        yield cluster


def noetl(*args: str, cwd: Path, plugin: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOETL_") and k != "PYTHONPATH"}
    if plugin:
        env.update(ENV)
    return subprocess.run(
        [sys.executable, "-m", "noetl", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=60
    )


def test_plugin_tool_runs_with_its_credential(noetl_run, runtime: str) -> None:
    r = noetl_run(ECHO, "--credentials", "creds.yaml", files={"creds.yaml": CREDS}, env=ENV)
    assert r.status == "COMPLETED", r.stderr
    result = r.results["start"]
    assert result["echo"] == "hi hi hi" and result["keyed"] is True
    assert "s3cr3t-echo" not in json.dumps(r.events) + r.stdout + r.stderr


def test_plugin_config_error_at_run_time_names_field_tool_and_step(noetl_run, runtime: str) -> None:
    text = ECHO.replace("repeat: 3", 'repeat: "{{ workload.word }}"')
    r = noetl_run(text, "--credentials", "creds.yaml", files={"creds.yaml": CREDS}, env=ENV)
    assert r.status == "FAILED"
    message = r.outcome["error"]["message"]
    assert "'repeat'" in message and "echo" in message and "start" in json.dumps(r.outcome["error"])


def test_validate_names_tool_step_field_and_line_of_a_wrong_field(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(ECHO.replace("repeat: 3", "repat: 3"))
    proc = noetl("validate", "bad.yaml", cwd=tmp_path)
    assert proc.returncode == 2
    assert "bad.yaml:11:" in proc.stderr  # the line of 'repat'
    assert "unknown field 'repat' for tool kind 'echo'" in proc.stderr and "step 'start'" in proc.stderr
    assert "allowed: message, repeat" in proc.stderr


def test_without_the_package_the_kind_is_unknown_and_installed_kinds_are_listed(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(ECHO)
    proc = noetl("validate", "p.yaml", cwd=tmp_path, plugin=False)
    assert proc.returncode == 2
    assert "unknown tool kind 'echo'" in proc.stderr and "http" in proc.stderr and "postgres" in proc.stderr
    assert "p.yaml:9:" in proc.stderr  # the line of the kind
    assert noetl("validate", "p.yaml", cwd=tmp_path).returncode == 0


def test_tool_list_describe_and_schema_include_the_plugin(tmp_path: Path) -> None:
    listed = noetl("tool", "list", cwd=tmp_path)
    assert listed.returncode == 0
    line = next(x for x in listed.stdout.splitlines() if x.startswith("echo "))
    assert "noetl-echo-tool" in line and "0.3.0" in line
    described = json.loads(noetl("tool", "describe", "echo", cwd=tmp_path).stdout)
    assert described["credential_types"] == ["echo_key"]
    assert described["config_schema"]["required"] == ["message"]
    assert described["config_schema"]["properties"]["repeat"]["type"] == "integer"
    assert "kind: echo" in described["example"]
    schema = json.loads(noetl("schema", cwd=tmp_path).stdout)
    assert "echo" in schema["$defs"]["task"]["properties"]["kind"]["enum"]
    rule = next(
        r for r in schema["$defs"]["task"]["allOf"] if r["if"]["properties"]["kind"]["const"] == "echo"
    )
    assert "repeat" in rule["then"]["properties"] and "message" in rule["then"]["propertyNames"]["enum"]
    missing = noetl("tool", "describe", "nope", cwd=tmp_path)
    assert missing.returncode != 0 and "unknown tool kind 'nope'" in missing.stderr


def test_server_lists_the_plugin_in_api_tools(distributed_cluster: Any) -> None:
    tools = httpx.get(f"{distributed_cluster.url}/api/tools", timeout=10).json()["tools"]
    kinds = {t["kind"]: t for t in tools}
    assert {"echo", "http", "postgres", "duckdb"} <= set(kinds)
    assert kinds["echo"]["version"] == "0.3.0" and kinds["echo"]["provider"] == "noetl-echo-tool"
    one = httpx.get(f"{distributed_cluster.url}/api/tools/echo", timeout=10)
    assert one.status_code == 200 and one.json()["config_schema"]["properties"]["message"]["type"] == "string"
    assert httpx.get(f"{distributed_cluster.url}/api/tools/nope", timeout=10).status_code == 404
