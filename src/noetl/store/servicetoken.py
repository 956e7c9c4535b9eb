"""The server's service token when none is configured: ``service.token`` in the data directory.

The server trusts no caller by default, loopback ones included: every request but ``/health``
carries ``Authorization: Bearer <service token>``. ``NOETL_SERVICE_TOKEN`` sets the token; without
it ``noetl server start`` creates one here (32 random bytes, URL-safe base64, mode 0600) on first
start and reuses it afterwards, and the CLI and the gateway on the same machine read it from the
same place - so the embedded quick-start needs no configuration, while anyone who cannot read the
data directory (another user, a task running as the task user) cannot talk to the server.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

FILE_NAME = "service.token"


def path(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


def ensure(data_dir: Path) -> str:
    """The token in ``data_dir``, created (mode 0600, atomically) when there is none yet."""
    found = read(data_dir)
    if found:
        return found
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(32)
    target = path(data_dir)
    temporary = target.with_name(f".{FILE_NAME}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    try:
        os.link(temporary, target)  # fails when another process created it first: theirs wins
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return read(data_dir) or token


def read(data_dir: Path) -> str | None:
    """The token stored in ``data_dir``, or None when there is none (or it cannot be read)."""
    try:
        text = path(data_dir).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return text or None
