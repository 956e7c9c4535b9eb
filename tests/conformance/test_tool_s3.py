"""The ``s3`` tool on both runtimes against ``moto`` in server mode, which stands in for Amazon S3
(a real HTTP server on 127.0.0.1 speaking the S3 REST API; MinIO is not available here).

The credential (type ``s3``: keys, region, ``endpoint_url`` of the moto server) comes from a
credentials file (``--credentials``; distributed: stored on the server first), never the playbook.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from support.cluster import free_port
from support.toolcluster import private_cluster

SECRET = "s3cr3t-moto-key-8c1f"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def s3(moto_url: str) -> Any:
    client = boto3.client(
        "s3",
        endpoint_url=moto_url,
        aws_access_key_id="testing",
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
    )
    client.create_bucket(Bucket="reports")
    client.create_bucket(Bucket="archive")
    return client


@pytest.fixture(scope="module")
def file_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("s3-files")


@pytest.fixture(scope="module")
def distributed_cluster(
    pg_server_url: str, tmp_path_factory: pytest.TempPathFactory, file_root: Path
) -> Iterator[Any]:
    env = {"NOETL_FILE_ROOTS": str(file_root)}
    with private_cluster(pg_server_url, tmp_path_factory.mktemp("s3-cluster"), env) as cluster:
        yield cluster


def creds(endpoint: str) -> str:
    return json.dumps(
        {
            "my_s3": {
                "type": "s3",
                "data": {
                    "access_key_id": "testing",
                    "secret_access_key": SECRET,
                    "region": "us-east-1",
                    "endpoint_url": endpoint,
                },
            }
        }
    )


def run(noetl_run: Any, text: str, endpoint: str, root: Path) -> Any:
    return noetl_run(
        text,
        "--credentials",
        "creds.json",
        files={"creds.json": creds(endpoint)},
        env={"NOETL_FILE_ROOTS": str(root)},
    )


OBJECTS = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: s3_objects}
workload: {prefix: "RUNTIME/"}
workflow:
  - step: start
    tool: {kind: s3, auth: my_s3, operation: put, bucket: reports, key: "{{ workload.prefix }}a.json", data: {n: 1, tags: [x]}}
    next: {arcs: [{step: put_text}]}
  - step: put_text
    tool: {kind: s3, auth: my_s3, operation: put, bucket: reports, key: "{{ workload.prefix }}b.txt", data: "hello s3"}
    next: {arcs: [{step: get_json}]}
  - step: get_json
    tool: {kind: s3, auth: my_s3, operation: get, bucket: reports, key: "{{ workload.prefix }}a.json"}
    next: {arcs: [{step: get_text}]}
  - step: get_text
    tool: {kind: s3, auth: my_s3, operation: get, bucket: reports, key: "{{ workload.prefix }}b.txt"}
    next: {arcs: [{step: copy}]}
  - step: copy
    tool: {kind: s3, auth: my_s3, operation: copy, bucket: archive, key: "{{ workload.prefix }}a-copy.json",
           source_bucket: reports, source_key: "{{ workload.prefix }}a.json"}
    next: {arcs: [{step: listing}]}
  - step: listing
    tool: {kind: s3, auth: my_s3, operation: list, bucket: reports, prefix: "{{ workload.prefix }}"}
    next: {arcs: [{step: url}]}
  - step: url
    tool: {kind: s3, auth: my_s3, operation: presign, bucket: reports, key: "{{ workload.prefix }}a.json", expires: 300}
    next: {arcs: [{step: remove}]}
  - step: remove
    tool: {kind: s3, auth: my_s3, operation: delete, bucket: reports, key: "{{ workload.prefix }}b.txt"}
    next: {arcs: [{step: gone}]}
  - step: gone
    tool: {kind: s3, auth: my_s3, operation: head, bucket: reports, key: "{{ workload.prefix }}b.txt"}
"""


def test_object_operations(noetl_run, runtime: str, moto_url: str, s3: Any, file_root: Path) -> None:
    r = run(noetl_run, OBJECTS.replace("RUNTIME", runtime), moto_url, file_root)
    assert r.status == "COMPLETED", r.outcome and r.outcome["error"]
    res = r.results
    assert res["get_json"]["data"] == {"n": 1, "tags": ["x"]}
    assert res["get_text"]["text"] == "hello s3" and res["get_text"]["bytes"] == 8
    assert res["copy"]["bucket"] == "archive" and res["copy"]["bytes"] == res["get_json"]["bytes"]
    assert [o["key"] for o in res["listing"]["objects"]] == [f"{runtime}/a.json", f"{runtime}/b.txt"]
    fetched = httpx.get(res["url"]["url"], timeout=10)  # the presigned URL works without credentials
    assert fetched.status_code == 200 and fetched.json() == {"n": 1, "tags": ["x"]}
    assert res["remove"]["deleted"] is True and res["gone"]["exists"] is False
    assert (
        s3.get_object(Bucket="archive", Key=f"{runtime}/a-copy.json")["Body"].read()
        == b'{"n": 1, "tags": ["x"]}'
    )
    assert SECRET not in json.dumps(r.events) + r.stdout + r.stderr


def test_large_objects_stream_through_files_in_multipart(
    noetl_run, runtime: str, moto_url: str, s3: Any, file_root: Path
) -> None:
    source = file_root / f"big-{runtime}.bin"
    block = os.urandom(1024 * 1024)
    with source.open("wb") as out:
        for _ in range(12):  # 12 MiB: three 5 MiB parts
            out.write(block)
    text = f"""
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {{name: s3_big}}
    workflow:
      - step: start
        tool: {{kind: s3, auth: my_s3, operation: put, bucket: reports, key: big/{runtime}.bin, file: big-{runtime}.bin, chunk_mb: 5}}
        next: {{arcs: [{{step: fetch}}]}}
      - step: fetch
        tool: {{kind: s3, auth: my_s3, operation: get, bucket: reports, key: big/{runtime}.bin, file: back/{runtime}.bin}}
        next: {{arcs: [{{step: inline}}]}}
      - step: inline
        tool: {{kind: s3, auth: my_s3, operation: get, bucket: reports, key: big/{runtime}.bin}}
    """
    r = run(noetl_run, text, moto_url, file_root)
    assert r.status == "FAILED"  # the inline get of 12 MiB is refused
    assert r.results["start"]["bytes"] == 12 * 1024 * 1024
    assert r.results["start"]["etag"].endswith("-3"), "not a multipart upload"
    back = Path(r.results["fetch"]["path"])
    assert back.read_bytes() == source.read_bytes()
    message = r.outcome["error"]["message"]
    assert (
        "max_bytes=1048576" in message
        and "give 'file'" in message
        and "inline" in json.dumps(r.outcome["error"])
    )


def test_missing_bucket_and_unreachable_endpoint_are_named(
    noetl_run, runtime: str, moto_url: str, s3: Any, file_root: Path
) -> None:
    text = """
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: s3_missing}
    workflow:
      - step: start
        tool: {kind: s3, auth: my_s3, operation: get, bucket: no-such-bucket, key: x.txt}
    """
    r = run(noetl_run, text, moto_url, file_root)
    assert r.status == "FAILED"
    message = r.outcome["error"]["message"]
    assert (
        "s3 get s3://no-such-bucket/x.txt" in message
        and "NoSuchBucket" in message
        and "step 'start'" in message
    )
    dead = f"http://127.0.0.1:{free_port()}"
    r = run(noetl_run, text, dead, file_root)
    assert r.status == "FAILED"
    message = r.outcome["error"]["message"]
    assert f"cannot reach 127.0.0.1:{dead.rsplit(':', 1)[1]}" in message
    assert SECRET not in json.dumps(r.events) + r.stdout + r.stderr


def test_local_file_outside_the_roots_is_refused(
    noetl_run, runtime: str, moto_url: str, s3: Any, file_root: Path
) -> None:
    text = """
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: s3_escape}
    workflow:
      - step: start
        tool: {kind: s3, auth: my_s3, operation: put, bucket: reports, key: passwd, file: /etc/passwd}
    """
    r = run(noetl_run, text, moto_url, file_root)
    assert r.status == "FAILED" and "outside the file roots" in r.outcome["error"]["message"]
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket="reports", Key="passwd")
