"""Process groups that die with the runtime: a watchdog process kills them when this process goes.

Tasks that run user code (``shell`` commands, the ``python`` pool's children) each run in a process
group of their own, so that a timeout or a cancel can kill everything the task started. When the
runtime itself dies - a worker SIGKILLed, ``noetl run`` killed - nobody would kill those groups, and
their processes would keep running as orphans (issue 17). ``PR_SET_PDEATHSIG`` reaches only a
direct child, not what it started.

So the first :func:`watch` starts one small watchdog process (its own session, so that a signal to
the runtime's process group does not take it too) reading group ids from a pipe: ``+PGID`` when a
group starts, ``-PGID`` when it ended. When the pipe closes - this process exited, however it
died - the watchdog SIGKILLs every group still registered and exits. Registering is one ``write``
of a few bytes; nothing else is shared.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import sys
import threading
from typing import Final

_PROGRAM: Final = """
import os, signal, sys
groups = set()
for line in sys.stdin.buffer:
    try:
        pgid = int(line[1:])
    except ValueError:
        continue
    if line[:1] == b'+':
        groups.add(pgid)
    else:
        groups.discard(pgid)
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"""


class Watchdog:
    """The watchdog of this process (started on first use, restarted if it died)."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._pid = 0  # the runtime process that started it (a forked child must start its own)
        self._lock = threading.Lock()

    def watch(self, pgid: int) -> None:
        """Kill process group ``pgid`` if this process dies before :meth:`forget` is called."""
        self._send(f"+{pgid}\n".encode())

    def forget(self, pgid: int) -> None:
        """The group ended (or was killed) normally: the watchdog no longer needs to kill it."""
        if self._process is not None:
            self._send(f"-{pgid}\n".encode(), start=False)

    def _send(self, line: bytes, start: bool = True) -> None:
        with self._lock:
            process = self._process
            if process is None or self._pid != os.getpid() or process.poll() is not None:
                if not start:
                    return
                process = self._start()
            assert process.stdin is not None
            with contextlib.suppress(OSError):  # a watchdog that died cannot help; the task still runs
                os.write(process.stdin.fileno(), line)

    def _start(self) -> subprocess.Popen[bytes]:
        self._process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _PROGRAM],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._pid = os.getpid()
        atexit.register(self._close)
        return self._process

    def _close(self) -> None:
        """At exit: close the pipe (the watchdog kills what is still registered) and reap it."""
        process = self._process
        if process is None or self._pid != os.getpid():
            return
        assert process.stdin is not None
        with contextlib.suppress(OSError):
            process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=2)

    @property
    def pid(self) -> int | None:
        """The watchdog's process id, if it runs (for tests and diagnostics)."""
        return self._process.pid if self._process is not None else None


WATCHDOG: Final = Watchdog()
"""The one watchdog of this process."""


def watch(pgid: int) -> None:
    """:meth:`Watchdog.watch` on this process's watchdog."""
    WATCHDOG.watch(pgid)


def forget(pgid: int) -> None:
    """:meth:`Watchdog.forget` on this process's watchdog."""
    WATCHDOG.forget(pgid)
