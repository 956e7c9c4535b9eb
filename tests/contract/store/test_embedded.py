"""The embedded PostgreSQL: started once, found again by other processes, stopped on request."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from noetl.store import embedded

FIND_FROM_ANOTHER_PROCESS = "import sys; from pathlib import Path; from noetl.store import embedded; print(embedded.ensure(Path(sys.argv[1])))"


@pytest.fixture
def pgdata() -> Iterator[Path]:
    # Not under pytest's tmp_path: when tests run as root, pgserver runs PostgreSQL as another user,
    # and pytest keeps resetting its base directory to mode 0700 (any concurrent run does).
    base = Path(tempfile.mkdtemp(prefix="noetl-embedded-"))
    path = base / "noetl" / "pg"
    try:
        yield path
    finally:
        embedded.stop(path)
        shutil.rmtree(base, ignore_errors=True)


def test_ensure_starts_once_and_other_processes_reuse_it(pgdata: Path) -> None:
    url = embedded.ensure(pgdata)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("noetl",)
    pid = (pgdata / "postmaster.pid").read_text().split()[0]

    assert embedded.ensure(pgdata) == url
    found = subprocess.run(
        [sys.executable, "-c", FIND_FROM_ANOTHER_PROCESS, str(pgdata)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.strip() == url
    assert (pgdata / "postmaster.pid").read_text().split()[0] == pid  # the same server, still running

    assert embedded.stop(pgdata)
    assert not (pgdata / "postmaster.pid").exists()
    assert not embedded.stop(pgdata)


def test_default_dir_is_under_the_user_data_dir() -> None:
    path = embedded.default_dir()
    assert path.name == "pg" and path.parent.name == "noetl"
    assert embedded.key_file() == path.resolve().parent / "encryption.key"
    assert embedded.key_file(Path("/srv/x/pg")) == Path("/srv/x/encryption.key")
