"""The embedded PostgreSQL: a private server (the ``pgserver`` package) under the user's data dir.

``noetl server`` without ``NOETL_DATABASE_URL`` calls :func:`ensure`, and so does ``noetl worker`` on
the same machine: the first call initialises and starts the server, later calls (from any process)
find it running through its ``postmaster.pid`` and reuse it. The server listens on a Unix socket
only and keeps running after the process that started it exits; :func:`stop` shuts it down.
NoETL's tables live in a database named ``noetl`` inside it.
"""

from __future__ import annotations

import os
import subprocess
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


def ensure(data_dir: Path | None = None) -> str:
    """Start the embedded server if it is not running; returns the URL of its ``noetl`` database."""
    pgdata = (data_dir or default_dir()).expanduser().resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    try:
        # cleanup_mode=None: leave the server running when this process exits, for the others.
        server = load_pgserver().get_server(pgdata, cleanup_mode=None)
        url = server.get_uri()
    except (OSError, subprocess.SubprocessError, AssertionError, RuntimeError) as exc:
        raise StoreUnavailable(f"could not start the embedded PostgreSQL in {pgdata}: {exc}") from exc
    create_database(url)
    return str(server.get_uri(DATABASE))


def stop(data_dir: Path | None = None) -> bool:
    """Shut the embedded server down (fast: open sessions are ended); False if it was not running."""
    pgserver = load_pgserver()
    from pgserver.utils import PostmasterInfo

    pgdata = (data_dir or default_dir()).expanduser().resolve()
    info = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
    if info is None or not info.is_running():
        return False
    # pgserver runs the server as the unprivileged user "pgserver" when we are root.
    user = "pgserver" if os.name == "posix" and os.geteuid() == 0 else None
    try:
        pgserver.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    except (OSError, subprocess.SubprocessError) as exc:
        raise StoreUnavailable(f"could not stop the embedded PostgreSQL in {pgdata}: {exc}") from exc
    return True


def create_database(server_url: str) -> None:
    """Create the ``noetl`` database on first use (CREATE DATABASE cannot run in a transaction)."""
    import psycopg
    from psycopg import sql

    from noetl.store.errors import translated

    with translated("creating the noetl database"), psycopg.connect(server_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone()
        if exists is None:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
            except psycopg.errors.DuplicateDatabase:
                pass  # another process created it in between


def load_pgserver() -> ModuleType:
    """Import pgserver quietly: it warns through platformdirs when XDG_RUNTIME_DIR is unset."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
    return pgserver
