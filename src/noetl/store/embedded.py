"""The embedded PostgreSQL: a private server (the ``pgserver`` package) under the user's data dir.

``noetl server`` without ``NOETL_DATABASE_URL`` calls :func:`ensure`, and so does ``noetl worker`` on
the same machine: the first call initialises and starts the server, later calls (from any process)
find it running through its ``postmaster.pid`` and reuse it. The server listens on a Unix socket
only; it stops when the last process that called :func:`ensure` exits (pgserver keeps their ids
beside the data), and :func:`stop` (``noetl db stop``) shuts it down at once.
NoETL's tables live in a database named ``noetl`` inside it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import warnings
from pathlib import Path
from types import ModuleType

from noetl.store.errors import StoreUnavailable

DATABASE = "noetl"


def default_dir() -> Path:
    """``<user data dir>/noetl/pg`` (platformdirs), e.g. ``~/.local/share/noetl/pg`` on Linux."""
    try:
        import platformdirs
    except ImportError:
        return Path.home() / ".local" / "share" / "noetl" / "pg"
    return Path(platformdirs.user_data_dir("noetl")) / "pg"


def key_file(data_dir: Path | None = None) -> Path:
    """Where the embedded setup keeps its credential encryption key: ``encryption.key`` beside the
    database directory (``<user data dir>/noetl/encryption.key`` by default), outside PostgreSQL's
    own files. ``crypto.Cipher.from_settings(None, key_file())`` creates it on first use."""
    return (data_dir or default_dir()).expanduser().resolve().parent / "encryption.key"


def ensure(data_dir: Path | None = None) -> str:
    """Start the embedded server if it is not running; returns the URL of its ``noetl`` database."""
    pgdata = (data_dir or default_dir()).expanduser().resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    try:
        # cleanup_mode="stop": pgserver counts the processes using the server (in the data
        # directory) and stops it when the last of them exits, so it does not outlive them.
        server = load_pgserver().get_server(pgdata, cleanup_mode="stop")
        url = server.get_uri()
    except (OSError, subprocess.SubprocessError, AssertionError, RuntimeError) as exc:
        raise StoreUnavailable(f"could not start the embedded PostgreSQL in {pgdata}: {exc}") from exc
    create_database(url)
    return str(server.get_uri(DATABASE))


def stop(data_dir: Path | None = None, timeout: float = 30.0) -> bool:
    """Shut the embedded server down (fast mode: open sessions end); False if it was not running."""
    load_pgserver()
    from pgserver.utils import PostmasterInfo

    pgdata = (data_dir or default_dir()).expanduser().resolve()
    pid_file = pgdata / "postmaster.pid"
    info = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
    if info is None or not info.is_running():
        return False
    # What `pg_ctl stop -m fast` does, without running pg_ctl as pgserver's service user when we are root.
    try:
        os.kill(info.pid, signal.SIGINT)
    except ProcessLookupError:
        return True  # it stopped by itself in between
    deadline = time.monotonic() + timeout
    while pid_file.exists():  # the postmaster removes it as the last step of shutting down
        if time.monotonic() > deadline:
            raise StoreUnavailable(f"the embedded PostgreSQL in {pgdata} did not stop within {timeout:g}s")
        time.sleep(0.02)
    return True


def create_database(server_url: str) -> None:
    """Create the ``noetl`` database on first use (CREATE DATABASE cannot run in a transaction)."""
    import psycopg
    from psycopg import sql

    from noetl.store.errors import translated

    with translated("creating the noetl database"), psycopg.connect(server_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone()
        if exists is None:
            # Another process was first: caught by name, or by the catalog's unique index when
            # both CREATE DATABASE statements ran at the same moment.
            with contextlib.suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))


def load_pgserver() -> ModuleType:
    """Import pgserver quietly: it warns through platformdirs when XDG_RUNTIME_DIR is unset."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
    return pgserver
