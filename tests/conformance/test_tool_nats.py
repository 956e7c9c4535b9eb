"""The ``nats`` tool on both runtimes against a real NATS server with JetStream: the machine's
(127.0.0.1:4222) when it answers, else a private ``nats-server -js`` started here on a free port.

Each test uses names of its own (bucket, subject, stream) and removes them afterwards.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from support.cluster import free_port, wait_until


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if _answers(4222):
        yield "nats://127.0.0.1:4222"
        return
    binary = shutil.which("nats-server")
    assert binary, "no NATS on 127.0.0.1:4222 and no nats-server binary to start one"
    port = free_port()
    store = tmp_path_factory.mktemp("nats-js")
    proc = subprocess.Popen([binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)])
    try:
        wait_until(lambda: _answers(port), "nats-server", timeout=15)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def admin(url: str, action: Any) -> Any:
    async def go() -> Any:
        nc = await nats.connect(url)
        try:
            return await action(nc, nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(go())


def run(noetl_run: Any, text: str, url: str) -> Any:
    creds = {"my_nats": {"type": "nats", "data": {"url": url}}}
    return noetl_run(text, "--credentials", "creds.json", files={"creds.json": json.dumps(creds)})


def test_keyvalue_put_get_delete(noetl_run, runtime: str, nats_url: str) -> None:
    bucket = f"noetl_t_{uuid.uuid4().hex[:8]}"
    text = f"""
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {{name: nats_kv}}
    workload: {{bucket: {bucket}}}
    workflow:
      - step: start
        tool: {{kind: nats, auth: my_nats, operation: kv_put, bucket: "{{{{ workload.bucket }}}}", create: true,
               key: session.1, value: {{user: ada, active: true}}}}
        next: {{arcs: [{{step: get}}]}}
      - step: get
        tool: {{kind: nats, auth: my_nats, operation: kv_get, bucket: "{{{{ workload.bucket }}}}", key: session.1}}
        next: {{arcs: [{{step: remove}}]}}
      - step: remove
        tool: {{kind: nats, auth: my_nats, operation: kv_delete, bucket: "{{{{ workload.bucket }}}}", key: session.1}}
        next: {{arcs: [{{step: again}}]}}
      - step: again
        tool: {{kind: nats, auth: my_nats, operation: kv_get, bucket: "{{{{ workload.bucket }}}}", key: session.1}}
    """
    try:
        r = run(noetl_run, text, nats_url)
        assert r.status == "COMPLETED", r.outcome and r.outcome["error"]
        assert r.results["start"]["revision"] >= 1
        assert (
            r.results["get"]["value"] == {"user": "ada", "active": True} and r.results["get"]["found"] is True
        )
        assert r.results["remove"]["deleted"] is True and r.results["again"]["found"] is False
    finally:
        admin(nats_url, lambda nc, js: js.delete_key_value(bucket))


def test_jetstream_publish_pull_and_core_publish(noetl_run, runtime: str, nats_url: str) -> None:
    name = f"NOETL_T_{uuid.uuid4().hex[:8].upper()}"
    subject = f"noetl.t.{name.lower()}"
    admin(nats_url, lambda nc, js: js.add_stream(name=name, subjects=[f"{subject}.>"]))
    text = f"""
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {{name: nats_js}}
    workflow:
      - step: start
        tool: {{kind: nats, auth: my_nats, operation: js_publish, subject: {subject}.orders, data: {{id: 1}}}}
        next: {{arcs: [{{step: second}}]}}
      - step: second
        tool: {{kind: nats, auth: my_nats, operation: js_publish, subject: {subject}.orders, data: plain text}}
        next: {{arcs: [{{step: pull}}]}}
      - step: pull
        tool: {{kind: nats, auth: my_nats, operation: js_pull, subject: {subject}.orders, durable: reader, batch: 5, wait: 0.5}}
        next: {{arcs: [{{step: pull_again}}]}}
      - step: pull_again
        tool: {{kind: nats, auth: my_nats, operation: js_pull, subject: {subject}.orders, durable: reader, batch: 5, wait: 0.2}}
        next: {{arcs: [{{step: core}}]}}
      - step: core
        tool: {{kind: nats, auth: my_nats, operation: publish, subject: {subject}.core, data: [1, 2]}}
    """
    try:
        r = run(noetl_run, text, nats_url)
        assert r.status == "COMPLETED", r.outcome and r.outcome["error"]
        assert (
            r.results["start"]["stream"] == name
            and r.results["second"]["seq"] == r.results["start"]["seq"] + 1
        )
        assert [m["data"] for m in r.results["pull"]["messages"]] == [{"id": 1}, "plain text"]
        assert r.results["pull_again"]["count"] == 0  # acknowledged: not delivered twice
        assert r.results["core"]["bytes"] == len("[1, 2]")
        info = admin(nats_url, lambda nc, js: js.stream_info(name))
        assert info.state.messages == 3  # the core publish on a stream subject is stored too
    finally:
        admin(nats_url, lambda nc, js: js.delete_stream(name))


def test_missing_bucket_and_unreachable_server_are_named(noetl_run, runtime: str, nats_url: str) -> None:
    text = """
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: nats_bad}
    workflow:
      - step: start
        tool: {kind: nats, auth: my_nats, operation: kv_get, bucket: no_such_bucket_here, key: k}
    """
    r = run(noetl_run, text, nats_url)
    assert r.status == "FAILED"
    message = r.outcome["error"]["message"]
    assert "nats kv_get no_such_bucket_here (step 'start')" in message and "does not exist" in message
    port = free_port()
    r = run(noetl_run, text, f"nats://127.0.0.1:{port}")
    assert r.status == "FAILED"
    assert f"cannot reach 127.0.0.1:{port}" in r.outcome["error"]["message"]


def test_config_errors_are_caught_at_load_time(
    noetl_run, runtime: str, nats_url: str, tmp_path: Path
) -> None:
    text = """
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: nats_cfg}
    workflow:
      - step: start
        tool:
          kind: nats
          auth: my_nats
          operation: kv_put
          bucket: b
          batch: many
    """
    r = noetl_run(text, json_out=False)
    assert r.code == 2 and "playbook.yaml:12:" in r.stderr and "field 'batch'" in r.stderr
