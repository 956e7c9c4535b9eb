"""A private distributed cluster (own database, server, two workers) with extra environment.

Tool tests need settings that the shared conformance cluster does not have: a plug-in on
``PYTHONPATH``, ``NOETL_FILE_ROOTS``, an emulator's address. A test module overrides the
``distributed_cluster`` fixture with :func:`private_cluster` and gets its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from support.cluster import Cluster, running_cluster


@contextmanager
def private_cluster(pg_server_url: str, root: Path, env: Mapping[str, str]) -> Iterator[Cluster]:
    name = f"t_tools_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(pg_server_url)
    url = urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))
    try:
        with running_cluster(url, root, env=env) as cluster:
            yield cluster
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
