"""The ``file`` tool on both runtimes: formats, confinement to the file roots, clear errors.

The roots are temporary directories: ``NOETL_FILE_ROOTS`` for ``noetl run`` and for the workers
of this module's own cluster. No emulator is involved: this is the machine's real filesystem.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.toolcluster import private_cluster


@pytest.fixture(scope="module")
def file_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("file-root")


@pytest.fixture(scope="module")
def distributed_cluster(
    pg_server_url: str, tmp_path_factory: pytest.TempPathFactory, file_root: Path
) -> Iterator[Any]:
    env = {"NOETL_FILE_ROOTS": str(file_root)}
    with private_cluster(pg_server_url, tmp_path_factory.mktemp("file-cluster"), env) as cluster:
        yield cluster


def run(noetl_run: Any, root: Path, text: str) -> Any:
    return noetl_run(text, env={"NOETL_FILE_ROOTS": str(root)})


TEXT_AND_DELETE = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: file_text}
workload: {dir: txt-dir}
workflow:
  - step: start
    tool: {kind: file, operation: write, path: "{{ workload.dir }}/log.txt", data: "one\\n"}
    next: {arcs: [{step: append}]}
  - step: append
    tool: {kind: file, operation: write, path: "{{ workload.dir }}/log.txt", data: "two\\n", mode: append}
    next: {arcs: [{step: again}]}
  - step: again
    tool: {kind: file, operation: write, path: "{{ workload.dir }}/log.txt", data: "three", mode: create}
    next: {arcs: [{step: read}]}
  - step: read
    tool: {kind: file, operation: read, path: "{{ workload.dir }}/log.txt"}
    next: {arcs: [{step: there}]}
  - step: there
    tool: {kind: file, operation: exists, path: "{{ workload.dir }}/log.txt"}
    next: {arcs: [{step: rm}]}
  - step: rm
    tool: {kind: file, operation: delete, path: "{{ workload.dir }}", recursive: true}
    next: {arcs: [{step: gone}]}
  - step: gone
    tool: {kind: file, operation: exists, path: "{{ workload.dir }}"}
"""


def test_text_append_create_exists_and_delete(noetl_run, runtime: str, file_root: Path) -> None:
    r = run(noetl_run, file_root, TEXT_AND_DELETE)
    assert r.status == "FAILED"  # mode: create on an existing file fails the step 'again'
    assert "exists and mode is 'create'" in r.outcome["error"]["message"]
    r = run(noetl_run, file_root, TEXT_AND_DELETE.replace("mode: create", "mode: append"))
    assert r.status == "COMPLETED", r.outcome and r.outcome["error"]
    assert r.results["read"]["text"] == "one\ntwo\nthree" and r.results["read"]["bytes"] == 13
    assert r.results["there"]["exists"] is True and r.results["there"]["size"] == 13
    assert r.results["rm"]["deleted"] is True and r.results["gone"]["exists"] is False
    assert not list(file_root.glob("txt-*"))


def test_each_operation_result(noetl_run, runtime: str, file_root: Path) -> None:
    text = """
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: file_ops}
    workload: {dir: ops-dir}
    workflow:
      - step: start
        tool: {kind: file, operation: write, path: "{{ workload.dir }}/orders.csv",
               data: [{id: 1, region: eu, total: 9.5}, {id: 2, region: us, total: 12.0}, {id: 3, region: eu, total: 1.5}]}
        next: {arcs: [{step: csv}]}
      - step: csv
        tool: {kind: file, operation: read, path: "{{ workload.dir }}/orders.csv", limit: 2}
        next: {arcs: [{step: pq_write}]}
      - step: pq_write
        tool: {kind: file, operation: write, path: "{{ workload.dir }}/o.parquet", data: [{id: 7, total: 1.25}]}
        next: {arcs: [{step: pq}]}
      - step: pq
        tool: {kind: file, operation: read, path: "{{ workload.dir }}/o.parquet"}
        next: {arcs: [{step: js_write}]}
      - step: js_write
        tool: {kind: file, operation: write, path: "{{ workload.dir }}/m.json", data: {n: 3, tags: [a, b]}}
        next: {arcs: [{step: js}]}
      - step: js
        tool: {kind: file, operation: read, path: "{{ workload.dir }}/m.json"}
        next: {arcs: [{step: ls}]}
      - step: ls
        tool: {kind: file, operation: list, path: "{{ workload.dir }}", pattern: "*.csv"}
    """
    r = run(noetl_run, file_root, text)
    assert r.status == "COMPLETED", r.outcome and r.outcome["error"]
    res = r.results
    assert res["start"]["rows"] == 3 and res["start"]["format"] == "csv"
    assert res["csv"]["columns"] == ["id", "region", "total"]
    assert res["csv"]["rows"] == [
        {"id": 1, "region": "eu", "total": 9.5},
        {"id": 2, "region": "us", "total": 12.0},
    ]
    assert res["csv"]["row_count"] == 3 and res["csv"]["truncated"] is True
    assert res["pq"]["rows"] == [{"id": 7, "total": 1.25}] and res["pq"]["format"] == "parquet"
    assert res["js"]["data"] == {"n": 3, "tags": ["a", "b"]}
    assert [f["name"] for f in res["ls"]["files"]] == ["orders.csv"]
    written = Path(res["start"]["path"])
    assert (
        written.parent.parent == file_root.resolve()
        and written.read_text().splitlines()[0] == "id,region,total"
    )


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("../outside.txt", "must not be empty or contain '..'"),
        ("/etc/passwd", "outside the file roots"),
        ("link/secret.txt", "outside the file roots"),
    ],
)
def test_paths_outside_the_roots_are_refused(
    noetl_run, runtime: str, file_root: Path, tmp_path_factory: pytest.TempPathFactory, path: str, words: str
) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.txt").write_text("top secret")
    link = file_root / "link"
    if not link.exists():
        os.symlink(outside, link)
    text = f"""
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {{name: file_escape}}
    workflow:
      - step: start
        tool: {{kind: file, operation: read, path: "{path}"}}
    """
    r = run(noetl_run, file_root, text)
    assert r.status == "FAILED"
    error = json.dumps(r.outcome["error"])
    assert words in error and "start" in error
    assert "top secret" not in json.dumps(r.events) + r.stdout


def test_write_through_a_symlink_is_refused(noetl_run, runtime: str, file_root: Path, tmp_path: Path) -> None:
    target = tmp_path / "victim.txt"
    target.write_text("keep me")
    (file_root / f"trap-{runtime}.txt").unlink(missing_ok=True)
    os.symlink(target, file_root / f"trap-{runtime}.txt")
    text = f"""
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {{name: file_trap}}
    workflow:
      - step: start
        tool: {{kind: file, operation: write, path: "trap-{runtime}.txt", data: "overwritten"}}
    """
    r = run(noetl_run, file_root, text)
    assert r.status == "FAILED" and "outside the file roots" in json.dumps(r.outcome["error"])
    assert target.read_text() == "keep me"


def test_large_text_read_is_refused_and_points_to_duckdb(noetl_run, runtime: str, file_root: Path) -> None:
    (file_root / "big.txt").write_text("x" * 5000)
    text = """
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: file_big}
    workflow:
      - step: start
        tool: {kind: file, operation: read, path: big.txt, max_bytes: 1000}
    """
    r = run(noetl_run, file_root, text)
    assert r.status == "FAILED"
    message = r.outcome["error"]["message"]
    assert "5000 bytes" in message and "max_bytes=1000" in message and "duckdb" in message


def test_a_bad_operation_is_rejected_at_load_time_with_its_line(
    noetl_run, runtime: str, file_root: Path
) -> None:
    text = """
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: file_bad}
    workflow:
      - step: start
        tool:
          kind: file
          path: x.txt
          operation: rename
    """
    r = noetl_run(text, env={"NOETL_FILE_ROOTS": str(file_root)}, json_out=False)
    assert r.code == 2
    assert (
        "playbook.yaml:10:" in r.stderr and "field 'operation'" in r.stderr and "'read', 'write'" in r.stderr
    )
