"""A server that is still starting, as its clients on the same machine see it.

``noetl server start &`` followed at once by ``noetl run --runtime distributed`` (the README's
block, pasted whole) would meet a refused connection while the server initialises its embedded
PostgreSQL. So ``noetl server start`` leaves ``server-<port>.pid`` (its process id) in the data
directory for as long as it runs, and a client refused by a loopback server waits while such a
process is alive (or, for :data:`GRACE_SECONDS`, for one to appear), up to :data:`WAIT_SECONDS`.
Nothing else changes: with no server starting, the client's error comes after the short grace.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final, TypeVar
from urllib.parse import urlsplit

GRACE_SECONDS: Final = 2.0
WAIT_SECONDS: Final = 120.0
_POLL_SECONDS: Final = 0.1
_LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1"})

T = TypeVar("T")


def marker(data: Path, port: int) -> Path:
    return data / f"server-{port}.pid"


@contextlib.contextmanager
def announced(data: Path, port: int) -> Iterator[None]:
    """Mark this process as the server of ``port`` while the block runs."""
    path = marker(data, port)
    with contextlib.suppress(OSError):
        data.mkdir(parents=True, exist_ok=True)
        path.write_text(str(os.getpid()))
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if path.read_text().strip() == str(os.getpid()):
                path.unlink()


def starting_server(base_url: str, data: Path) -> bool:
    """True when ``base_url`` is a loopback address whose port a live ``noetl server`` claims."""
    parts = urlsplit(base_url)
    if parts.hostname not in _LOOPBACK:
        return False
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        pid = int(marker(data, port).read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def patiently(attempt: Callable[[], T], refused: Callable[[Exception], bool], base_url: str, data: Path) -> T:
    """``attempt()``, again while it is refused by a server that is starting on this machine."""
    started = time.monotonic()
    while True:
        try:
            return attempt()
        except Exception as exc:
            waited = time.monotonic() - started
            if not refused(exc) or waited > WAIT_SECONDS:
                raise
            if not starting_server(base_url, data) and (
                waited > GRACE_SECONDS or urlsplit(base_url).hostname not in _LOOPBACK
            ):
                raise
            time.sleep(_POLL_SECONDS)
