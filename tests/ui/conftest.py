"""A real cluster for the UI tests: server, one worker and the gateway as processes on loopback,
the playbooks the pages are tested with registered in its catalog, and API keys for its users."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from noetl.store import crypto
from support.cluster import Cluster, free_port, running_cluster, spawn, wait_until

SERVICE_TOKEN = "ui-tests-service-token-7c1d"

# A retry (the first attempt of `start` fails), a parallel loop, and a failure at the end; the
# result of `start` holds markup and a template that must be shown as text.
DEMO = textwrap.dedent(
    """
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: ui_demo, path: demo/ui_demo}
    workload: {items: 6, fail: true, label: first}
    workflow:
      - step: start
        tool:
          kind: python
          input: {attempt: "{{ _attempt }}", label: "{{ label }}"}
          code: |
            if attempt < 2:
                raise ConnectionError(f"flaky service (attempt {attempt})")
            result = {"attempts": attempt, "label": label,
                      "html": "<script>window.__pwned = 1</script><b>bold</b> " + "{" + "{ not_rendered }" + "}"}
          spec:
            policy:
              rules:
                - when: "{{ output.status == 'error' }}"
                  then: {do: retry, attempts: 3, backoff: none, delay: 0.05}
        next: {arcs: [{step: fanout}]}
      - step: fanout
        loop:
          in: "{{ items }}"
          iterator: n
          spec: {mode: parallel, max_in_flight: 3}
        tool: {kind: python, input: {n: "{{ iter.n }}"}, code: "import time; time.sleep(0.1); result = n * n"}
        next: {arcs: [{step: check}]}
      - step: check
        tool:
          kind: python
          input: {fail: "{{ fail }}", squares: "{{ fanout.results }}", label: "{{ start.label }}"}
          code: |
            if fail:
                raise ValueError(f"the check failed for {label}: {sum(squares)} is not what we expected")
            result = {"total": sum(squares), "label": label}
    """
)

# Runs until cancelled (a shell sleep), to test cancelling.
SLOW = textwrap.dedent(
    """
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: ui_slow, path: ops/ui_slow}
    workload: {seconds: 120}
    workflow:
      - step: start
        tool: {kind: shell, command: "sleep {{ seconds }}"}
    """
)

HELLO = textwrap.dedent(
    """
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: ui_hello, path: ops/ui_hello}
    workload:
      name: world
      tone: plain   # ui:enum=[plain,loud]
    workflow:
      - step: start
        tool:
          kind: python
          input: {name: "{{ name }}", tone: "{{ tone }}"}
          code: "result = {'greeting': ('hello ' + name).upper() if tone == 'loud' else 'hello ' + name}"
    """
)

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")


@dataclass
class UiCluster:
    cluster: Cluster
    gateway_url: str
    root: Path

    @property
    def url(self) -> str:
        return self.cluster.url

    def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {SERVICE_TOKEN}", **kw.pop("headers", {})}
        return httpx.request(method, f"{self.url}/api/{path}", headers=headers, timeout=30, **kw)

    def ok(self, method: str, path: str, **kw: Any) -> Any:
        response = self.api(method, path, **kw)
        assert response.status_code == 200, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    def register(self, text: str) -> dict[str, Any]:
        return dict(self.ok("POST", "catalog/register", json={"content": text}))

    def execute(self, path: str, payload: dict[str, Any] | None = None) -> str:
        body = self.ok("POST", "execute", json={"path": path, "payload": payload or {}})
        return str(body["execution_id"])

    def wait(
        self, execution_id: str, statuses: tuple[str, ...] = TERMINAL, timeout: float = 60
    ) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            row = self.ok("GET", f"executions/{execution_id}?include_events=false")
            return row if row["status"] in statuses else None

        found: dict[str, Any] = wait_until(done, f"execution {execution_id} in {statuses}", timeout)
        return found

    def key(self, name: str, role: str, *paths: str) -> str:
        args = ["token", "create", "--name", name, "--role", role, "--json"]
        for path in paths:
            args += ["--path", path]
        done = subprocess.run(
            [sys.executable, "-m", "noetl", *args],
            env=self.cluster.env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.root,
        )
        assert done.returncode == 0, done.stderr
        return str(json.loads(done.stdout)["key"])


@pytest.fixture(scope="module")
def ui_cluster(pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiCluster]:
    root = tmp_path_factory.mktemp("ui")
    env = {"NOETL_SERVICE_TOKEN": SERVICE_TOKEN, "NOETL_ENCRYPTION_KEY": crypto.new_key()}
    with running_cluster(pg_database, root, workers=1, env=env) as cluster:
        port = free_port()
        gateway = spawn("gateway", ["gateway", "start", "--port", str(port)], cluster.env, root)
        cluster.processes.append(gateway)
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            if gateway.popen.poll() is not None:
                raise AssertionError(f"the gateway exited:\n{gateway.output()}")
            try:
                return httpx.get(f"{url}/health", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(up, "the gateway's /health")
        ui = UiCluster(cluster, url, root)
        for text in (DEMO, SLOW, HELLO):
            ui.register(text)
        yield ui


def sse_events(response: httpx.Response, until: str = "end", limit: int = 10_000) -> list[tuple[str, Any]]:
    """The (event, data) pairs of a server-sent event stream, up to and including ``until``."""
    out: list[tuple[str, Any]] = []
    name, data = "message", []
    for line in response.iter_lines():
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and data:
            out.append((name, json.loads("\n".join(data))))
            if name == until or len(out) >= limit:
                return out
            name, data = "message", []
    return out
