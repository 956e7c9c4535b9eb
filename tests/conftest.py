"""Shared fixtures: a real PostgreSQL for tests that need one.

``NOETL_TEST_DATABASE_URL`` (e.g. ``postgresql://postgres@127.0.0.1:5432/test``) is used when set;
otherwise an embedded server from the ``pgserver`` package is started once per session. Each test
module gets a fresh database of its own (``pg_database`` fixture), dropped afterwards.
"""

from __future__ import annotations

import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of a PostgreSQL server where the tests may create databases."""
    url = os.environ.get("NOETL_TEST_DATABASE_URL")
    if url:
        yield url
        return
    import pgserver

    datadir = tempfile.mkdtemp(prefix="noetl-pgserver-")
    server = pgserver.get_server(datadir, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def _with_database(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


@pytest.fixture(scope="module")
def pg_database(pg_server_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database for this test module; yields its URL."""
    import psycopg

    stem = re.sub(r"[^a-z0-9]+", "_", request.module.__name__.lower())[-30:]
    name = f"t_{stem}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(pg_server_url, name)
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
