"""OpenTelemetry traces over the wire: a server with two workers sends the spans of ended executions
to an OTLP/HTTP receiver the test runs (a small one it owns: protobuf decoded with
``opentelemetry-proto``), configured only by the standard ``OTEL_*`` variables.

One execution, started with a W3C ``traceparent``, runs a loop with a retried task and calls a
sub-playbook; its spans and the child's must form one tree under the caller's span.
"""

from __future__ import annotations

import json
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from support.cluster import Cluster, free_port, running_cluster, wait_until

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"

PARENT = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: traced, path: tel/traced}
workflow:
  - step: start
    loop: {in: "{{ [1, 2] }}", iterator: n, spec: {mode: parallel}}
    tool:
      kind: python
      input: {n: "{{ iter.n }}", attempt: "{{ _attempt }}"}
      code: |
        if attempt < 2:
            raise ConnectionError("busy")
        result = n
      spec:
        policy:
          rules:
            - when: "{{ output.status == 'error' }}"
              then: {do: retry, attempts: 3, backoff: fixed, delay: 0.01}
    next: {arcs: [{step: call}]}
  - step: call
    tool: {kind: playbook, path: tel/child, input: {x: 1}}
    next: {arcs: [{step: ping}]}
  - step: ping
    tool: {kind: http, method: GET, url: "{{ ping_url }}"}
"""
CHILD = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: child, path: tel/child}
workflow:
  - step: start
    tool: {kind: python, code: "result = {'ok': True}"}
"""


class Receiver:
    """An OTLP/HTTP trace receiver on loopback: every span it was sent, decoded."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.traceparents: list[str | None] = []  # of the GETs an http step sent here
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                with receiver.lock:
                    for resource in request.resource_spans:
                        for scope in resource.scope_spans:
                            receiver.spans.extend(_span(s) for s in scope.spans)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.end_headers()

            def do_GET(self) -> None:
                receiver.traceparents.append(self.headers.get("traceparent"))
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def received(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.spans)


def _span(span: Any) -> dict[str, Any]:
    attributes = {
        a.key: a.value.WhichOneof("value") and getattr(a.value, a.value.WhichOneof("value"))
        for a in span.attributes
    }
    return {
        "name": span.name,
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent": span.parent_span_id.hex() or None,
        "start": span.start_time_unix_nano,
        "end": span.end_time_unix_nano,
        "attributes": attributes,
        "error": span.status.code == 2,
    }


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    found.thread.start()
    try:
        yield found
    finally:
        found.server.shutdown()
        found.server.server_close()


@pytest.fixture
def cluster(pg_database: str, tmp_path: Path, receiver: Receiver) -> Iterator[Cluster]:
    env = {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.url,
        "NOETL_EXPORT_INTERVAL": "0.2",
        "NOETL_LOG_FORMAT": "json",
    }
    with running_cluster(pg_database, tmp_path, workers=2, env=env) as running:
        yield running


def test_one_execution_and_its_sub_playbook_are_one_tree_under_the_caller(
    cluster: Cluster, receiver: Receiver
) -> None:
    with httpx.Client(base_url=cluster.url, timeout=10) as api:
        for text in (CHILD, PARENT):
            assert (
                api.post("/api/catalog/register", json={"content": textwrap.dedent(text)}).status_code == 200
            )
        started = api.post(
            "/api/execute",
            json={"path": "tel/traced", "payload": {"ping_url": receiver.url.replace("/v1/traces", "/ping")}},
            headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"},
        )
        assert started.status_code == 200, started.text
        execution_id = started.json()["execution_id"]

    def both_executions() -> list[dict[str, Any]] | None:
        spans = receiver.received()
        roots = [s for s in spans if s["name"].startswith("execution ")]
        return spans if len(roots) == 2 else None

    spans = wait_until(both_executions, "the spans of the execution and its child", 60)
    by_id = {s["span_id"]: s for s in spans}
    assert {s["trace_id"] for s in spans} == {TRACE_ID}
    (root,) = [s for s in spans if s["name"] == "execution tel/traced"]
    assert root["parent"] == CALLER_SPAN and root["attributes"]["noetl.execution_id"] == execution_id
    for span in spans:  # every other span hangs off one inside the tree
        if span is not root:
            assert span["parent"] in by_id, span
            assert by_id[span["parent"]]["start"] <= span["start"] <= span["end"]

    (child,) = [s for s in spans if s["name"] == "execution tel/child"]
    caller = by_id[child["parent"]]
    assert caller["name"] == "command call" and by_id[caller["parent"]]["name"] == "step call"
    commands = [s for s in spans if s["name"].startswith("command start[")]
    assert len(commands) == 2
    assert all(
        c["attributes"]["noetl.retries"] == 1 and c["attributes"]["noetl.tool.kind"] == "python"
        for c in commands
    )
    assert all(c["attributes"]["noetl.worker_id"] for c in commands)
    attempts = [s for s in spans if s["name"].startswith("attempt ") and by_id[s["parent"]] in commands]
    assert len(attempts) == 2

    # The http step's request carried the trace, with its command's span as the parent.
    (ping,) = [s for s in spans if s["name"] == "command ping"]
    assert receiver.traceparents == [f"00-{TRACE_ID}-{ping['span_id']}-01"]

    # ...and the workers' log lines about commands name the trace and the command's span.
    lines = [
        json.loads(line)
        for name in ("w1", "w2")
        for line in cluster.worker(name).output().splitlines()
        if line.startswith("{")
    ]
    logged = [line for line in lines if line.get("command_id") == ping["attributes"]["noetl.command_id"]]
    assert logged and all(
        line["trace_id"] == TRACE_ID and line["span_id"] == ping["span_id"] for line in logged
    )


def test_without_otel_variables_nothing_is_exported(pg_database: str, tmp_path: Path) -> None:
    with running_cluster(pg_database, tmp_path, workers=1) as cluster:
        status = httpx.get(f"{cluster.url}/api/export/status", timeout=10).json()
    assert status["configured"] is False and status["leader"] is None
