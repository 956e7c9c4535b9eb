"""Services that examples and tool tests run against, started on 127.0.0.1 by the tests themselves.

* ``moto_server()``: moto's S3 API in server mode, standing in for Amazon S3;
* ``support.clickhouse.clickhouse()``: Debian's clickhouse-server on free ports (see that module);
* ``nats_url()``: the machine's NATS (127.0.0.1:4222, JetStream on) when it answers, else a private
  ``nats-server -js`` on a free port.

``example_credentials(...)`` writes the credentials the service examples name (``example_s3``,
``example_nats``, ``example_clickhouse``), as a user's ``--credentials`` file would hold them.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from support.cluster import free_port, wait_until

EXAMPLE_BUCKET = "noetl-examples"


def answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@contextmanager
def nats_url(data_dir: Path) -> Iterator[str]:
    if answers(4222):
        yield "nats://127.0.0.1:4222"
        return
    binary = shutil.which("nats-server")
    assert binary, "no NATS on 127.0.0.1:4222 and no nats-server binary to start one"
    port = free_port()
    proc = subprocess.Popen([binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(data_dir)])
    try:
        wait_until(lambda: answers(port), "nats-server", timeout=15)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def example_credentials(path: Path, *, s3_endpoint: str, nats: str, clickhouse: str) -> Path:
    """The credentials file the service examples use; the example bucket is created too."""
    import boto3

    keys = {"access_key_id": "example", "secret_access_key": "example-secret", "region": "us-east-1"}
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id=keys["access_key_id"],
        aws_secret_access_key=keys["secret_access_key"],
        region_name=keys["region"],
    )
    client.create_bucket(Bucket=EXAMPLE_BUCKET)
    creds = {
        "example_s3": {"type": "s3", "data": {**keys, "endpoint_url": s3_endpoint}},
        "example_nats": {"type": "nats", "data": {"url": nats}},
        "example_clickhouse": {"type": "clickhouse", "data": {"url": clickhouse, "user": "default"}},
    }
    path.write_text(json.dumps(creds))
    return path
