"""A pool of warm child processes that run python-tool code outside the runtime's own process.

Each child is ``python -m noetl.tools.pychild`` (see that module for the wire format), started with
``subprocess.Popen`` (fork+exec, the same call ``asyncio.create_subprocess_exec`` makes) and driven
without asyncio transports: a request is one ``os.write`` to the child's stdin, and the reply is
read by a reader callback kept on the loop the child last served (moved when another loop calls).
That keeps the per-task overhead to a few syscalls and lets one pool serve any event loop (one loop
at a time), which the module-level default pool of :mod:`noetl.tools.python` relies on.

One request is in flight per child; at most ``size`` children exist; callers beyond that wait
in FIFO order. A child is killed (SIGKILL) and replaced lazily when its task times out, when the
awaiting coroutine is cancelled, when it ran out of memory, and of course when it died. Errors
come out as :class:`noetl.errors.ToolError` with ``error_kind`` ``python``, ``timeout``
(retryable), ``crash`` or ``memory`` and ``details["py"]`` = ``{exception, traceback, ...}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Mapping

from noetl.dsl.model import JSON
from noetl.errors import ToolError
from noetl.tools import watchdog
from noetl.tools.pychild import DEFAULT_MEMORY_MB, DEFAULT_SPIN_SECONDS, HEADER_BYTES, REPLY_RESULT
from noetl.tools.sandbox import Sandbox, inherited

_READ_SIZE = 1 << 16
_EXIT_WAIT_SECONDS = 2.0
_CLOSE_WAIT_SECONDS = 5.0


class _TimedOut(Exception):
    """The reply did not arrive within the task's timeout."""


class _ChildGone(Exception):
    """The child's pipes closed: it died (or was killed) before replying."""


class _Child:
    """One child process and its two pipes; at most one request in flight."""

    __slots__ = (
        "_buffer",
        "_loop",
        "_missing",
        "_process",
        "_replies",
        "_reply",
        "_requests",
        "directory",
        "pid",
        "scope",
    )

    def __init__(self, memory_mb: int, spin_seconds: float, sandbox: Sandbox) -> None:
        self.directory = sandbox.make_dir()
        self.scope: str | None = None  # set by its first task; never changes afterwards
        argv = [
            sys.executable,
            "-m",
            "noetl.tools.pychild",
            str(memory_mb),
            str(os.getpid()),
            str(spin_seconds),
            self.directory or "",
        ]
        # process_group=0: Ctrl-C in a terminal reaches the runtime, which decides; not the children.
        # The environment is the sandbox's (no NOETL_* settings), and the user the task user's.
        try:
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                bufsize=0,
                process_group=0,
                env=sandbox.env(home=self.directory),
                cwd=self.directory,
                user=sandbox.uid,
                group=sandbox.gid,
                extra_groups=sandbox.groups,
            )
        except BaseException:
            sandbox.remove_dir(self.directory)
            raise
        assert self._process.stdin is not None and self._process.stdout is not None
        self.pid = self._process.pid
        watchdog.watch(self.pid)  # its group (with what the task started) dies with the runtime
        self._requests = self._process.stdin.fileno()
        self._replies = self._process.stdout.fileno()
        os.set_blocking(self._replies, False)
        self._buffer = bytearray()
        self._missing = HEADER_BYTES + 1
        self._reply: asyncio.Future[tuple[int, bytearray]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def alive(self) -> bool:
        return self._process.poll() is None

    def exit_code(self) -> int | None:
        return self._process.poll()

    async def ask(self, request: bytes, timeout: float | None) -> tuple[int, bytearray]:
        """Send one framed request; return (tag, body) of the reply."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._watch(loop)
        reply: asyncio.Future[tuple[int, bytearray]] = loop.create_future()
        self._reply = reply
        timer = None
        try:
            self._write(request)
            if timeout is not None:
                timer = loop.call_later(timeout, self._on_timeout)
            return await reply
        finally:
            if timer is not None:
                timer.cancel()
            self._reply = None

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Keep a reader on the reply pipe in ``loop`` (registering one per request costs ~30 us)."""
        self._unwatch()
        loop.add_reader(self._replies, self._on_readable)
        self._loop = loop

    def _unwatch(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._replies)
        self._loop = None

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._requests, view) :]
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise _ChildGone() from exc

    def _on_readable(self) -> None:
        try:
            chunk = os.read(self._replies, max(_READ_SIZE, self._missing))
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        reply = self._reply
        if not chunk:
            self._unwatch()  # the pipe stays readable at EOF; keeping the reader would spin the loop
            if reply is not None and not reply.done():
                reply.set_exception(_ChildGone())
            return
        self._buffer += chunk
        if reply is not None and not reply.done():
            frame = self._take_frame()
            if frame is not None:
                reply.set_result(frame)

    def _take_frame(self) -> tuple[int, bytearray] | None:
        buffer = self._buffer
        if len(buffer) <= HEADER_BYTES:
            self._missing = HEADER_BYTES + 1 - len(buffer)
            return None
        end = HEADER_BYTES + 1 + int.from_bytes(buffer[:HEADER_BYTES], "big")
        if len(buffer) < end:
            self._missing = end - len(buffer)
            return None
        tag, body = buffer[HEADER_BYTES], buffer[HEADER_BYTES + 1 : end]
        del buffer[:end]
        self._missing = HEADER_BYTES + 1
        return tag, body

    def _on_timeout(self) -> None:
        if self._reply is not None and not self._reply.done():
            self._reply.set_exception(_TimedOut())

    def abort(self) -> None:
        """Fail the request in flight (the pool is closing)."""
        if self._reply is not None and not self._reply.done():
            self._reply.set_exception(_ChildGone())

    def kill(self) -> None:
        """SIGKILL the child's process group - the child and whatever its task started (a no-op
        when the child already exited)."""
        if self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            self._process.kill()
        watchdog.forget(self.pid)

    def close_pipes(self) -> None:
        self._unwatch()
        for pipe in (self._process.stdin, self._process.stdout):
            if pipe is not None:
                pipe.close()

    async def wait(self, seconds: float) -> int | None:
        """The exit code once the child has exited, or None if it is still running after ``seconds``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        delay = 0.0005
        while (code := self._process.poll()) is None and loop.time() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        return code

    def wait_blocking(self) -> None:
        self._process.wait()


class PythonPool:
    """Warm child processes running python-tool code; see the module docstring.

    ``size`` defaults to the number of CPUs (at least 2); ``memory_mb`` caps each child's address
    space unless a task asks for another cap. ``spin_seconds``: how long an idle child polls for
    the next request before it sleeps (see :class:`noetl.tools.pychild.Requests`); 0 disables it.
    On a 2-CPU VM a 200 us spin cut the sequential round trip from ~240 to ~145 us, and cost ~20%
    throughput when the children already saturate the CPUs. The default is 600 us: between two steps
    of a sequential chain the runtime needs ~300 us (record, decide, render), and a child that is
    still spinning then answers without a wake-up (bench/local.py W1: 0.53 -> 0.30 ms per step).

    ``sandbox`` (:mod:`noetl.tools.sandbox`) gives the children their environment, user and private
    directory, and maps a playbook's path to its scope: a child serves the scope of its first task
    only; a task of another scope gets a fresh child (an idle child of another scope is replaced when
    the pool is full).
    """

    def __init__(
        self,
        size: int | None = None,
        memory_mb: int = DEFAULT_MEMORY_MB,
        *,
        spin_seconds: float = DEFAULT_SPIN_SECONDS,
        sandbox: Sandbox | None = None,
    ) -> None:
        if size is not None and size < 1:
            raise ValueError(f"python pool size must be at least 1, got {size}")
        self.size = size if size is not None else max(2, os.cpu_count() or 2)
        self.memory_mb = memory_mb
        self.spin_seconds = spin_seconds
        self.sandbox = sandbox if sandbox is not None else inherited()
        self.closed = False
        self._count = 0
        self._idle: list[_Child] = []
        self._busy: set[_Child] = set()
        self._dead: list[_Child] = []
        self._waiters: deque[tuple[str, asyncio.Future[_Child | None]]] = deque()

    def pids(self) -> list[int]:
        """Process ids of the live children (for diagnostics and tests)."""
        return [child.pid for child in (*self._idle, *self._busy)]

    def start(self) -> None:
        """Start all children now, so that they are warm by the first task. Does not wait for them."""
        while not self.closed and self._count < self.size:
            self._count += 1
            self._idle.append(self._start())

    async def run(
        self,
        code: str,
        inputs: Mapping[str, JSON],
        *,
        timeout: float | None = None,
        memory_mb: int | None = None,
        libs: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        path: str | None = None,
    ) -> JSON:
        """Run ``code`` with ``inputs`` as globals in a child; return its result or raise ToolError.

        ``path``: the catalog path of the playbook the task belongs to (its scope, see the class)."""
        request = _frame(code, inputs, memory_mb, libs, env)
        scope = self.sandbox.scope(path)
        child = self._take(scope) or await self._wait_for_child(scope)
        child.scope = scope
        try:
            tag, body = await child.ask(request, timeout)
        except _TimedOut:
            self._discard(child)
            raise _timeout_error(timeout or 0.0) from None
        except _ChildGone:
            raise await self._death(child) from None
        except BaseException:  # cancelled: the child may be half way through the task
            self._discard(child)
            raise
        if tag == REPLY_RESULT:
            self._release(child)
            result: JSON = json.loads(body)
            return result
        error = _user_error(json.loads(body))
        # A child that hit its memory cap may be fragmented; start afresh rather than reuse it.
        if error.error_kind == "memory":
            self._discard(child)
        else:
            self._release(child)
        raise error

    async def close(self) -> None:
        """Kill every child and wait until they are gone. Idempotent; tasks in flight fail."""
        self.closed = True
        while self._waiters:
            _, waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
        for child in self._busy:
            child.kill()
            child.abort()
        while self._idle:
            self._discard(self._idle.pop())
        await self._reap(_CLOSE_WAIT_SECONDS)
        self.sandbox.close()

    def kill_now(self) -> None:
        """Synchronous close for interpreter exit, when no event loop may be running."""
        self.closed = True
        for child in (*self._busy, *self._idle, *self._dead):
            child.kill()
            child.wait_blocking()
            child.close_pipes()
            self.sandbox.remove_dir(child.directory)
        self._idle.clear()
        self._dead.clear()
        self.sandbox.close()

    def _take(self, scope: str) -> _Child | None:
        """A warm idle child of ``scope`` (or a fresh one), or a new one while there is room; None
        when all ``size`` are busy. An idle child of another scope is replaced when the pool is full."""
        self._collect_dead()
        while (child := self._idle_child(scope)) is not None:
            if child.alive():
                self._busy.add(child)
                return child
            self._discard(child)
        if self.closed:
            raise _closed_error()
        if self._count >= self.size and self._idle and not self._waiters:
            self._discard(self._idle.pop(0))  # the oldest idle child of another scope makes room
        if self._count >= self.size:
            return None
        self._count += 1
        return self._start_busy()

    def _idle_child(self, scope: str) -> _Child | None:
        """Take the most recently parked idle child that served ``scope``, else one that served none."""
        idle = self._idle
        for index in range(len(idle) - 1, -1, -1):
            if idle[index].scope == scope:
                return idle.pop(index)
        for index in range(len(idle) - 1, -1, -1):
            if idle[index].scope is None:
                return idle.pop(index)
        return None

    async def _wait_for_child(self, scope: str) -> _Child:
        """Wait in line for a child of ``scope`` that another task releases, or for a slot to start one in."""
        waiter: asyncio.Future[_Child | None] = asyncio.get_running_loop().create_future()
        self._waiters.append((scope, waiter))
        try:
            handed = await waiter
        except asyncio.CancelledError:
            self._pass_on(waiter)
            raise
        if handed is not None:
            return handed
        if self.closed:
            raise _closed_error()
        return self._start_busy()

    def _pass_on(self, waiter: asyncio.Future[_Child | None]) -> None:
        """A cancelled waiter gives back what it was handed: a child, or a slot reserved for it."""
        if not waiter.done():
            waiter.cancel()
        elif not waiter.cancelled() and not self.closed:
            handed = waiter.result()
            if handed is not None:
                self._release(handed)
            else:
                self._count -= 1
                self._offer(None)

    def _start(self) -> _Child:
        """Start a child in a slot already counted in ``_count``."""
        try:
            return _Child(self.memory_mb, self.spin_seconds, self.sandbox)
        except OSError as exc:
            self._count -= 1
            self._offer(None)
            raise ToolError(f"could not start a python child process: {exc}", error_kind="crash") from exc

    def _start_busy(self) -> _Child:
        child = self._start()
        self._busy.add(child)
        return child

    def _release(self, child: _Child) -> None:
        """A child finished a task and is healthy: hand it to the next waiter of its scope or park
        it; when only tasks of other scopes wait, it makes room for a fresh child for the first."""
        self._busy.discard(child)
        if self.closed:
            self._discard(child)
        elif not self._offer(child):
            if any(not waiter.done() for _, waiter in self._waiters):
                self._discard(child)
            else:
                self._idle.append(child)

    def _offer(self, handed: _Child | None) -> bool:
        """Hand a child (to the first live waiter of its scope), or None meaning a free slot
        (reserved here, to the first live waiter)."""
        waiters = self._waiters
        while waiters and waiters[0][1].done():
            waiters.popleft()
        for entry in waiters:
            scope, waiter = entry
            if waiter.done() or (handed is not None and handed.scope not in (None, scope)):
                continue
            waiters.remove(entry)
            if handed is not None:
                self._busy.add(handed)
            else:
                self._count += 1
            waiter.set_result(handed)
            return True
        return False

    def _discard(self, child: _Child) -> None:
        """Kill a child for good; its slot goes to the next waiter, who starts a new child."""
        self._busy.discard(child)
        child.kill()
        child.close_pipes()
        self.sandbox.remove_dir(child.directory)
        self._count -= 1
        self._dead.append(child)
        if not self.closed:
            self._offer(None)

    async def _death(self, child: _Child) -> ToolError:
        """The error for a child whose pipes closed mid-task, once its exit code is known."""
        try:
            code = await child.wait(_EXIT_WAIT_SECONDS)
        finally:
            self._discard(child)
        return _closed_error() if self.closed else _crash_error(code)

    def _collect_dead(self) -> None:
        """Reap children killed earlier, without blocking."""
        if self._dead:
            self._dead = [child for child in self._dead if child.exit_code() is None]

    async def _reap(self, seconds: float) -> None:
        for child in (*self._dead, *self._busy):
            if await child.wait(seconds) is None:
                child.kill()
                child.wait_blocking()
        self._dead.clear()


def _frame(
    code: str,
    inputs: Mapping[str, JSON],
    memory_mb: int | None,
    libs: Mapping[str, str] | None,
    env: Mapping[str, str] | None,
) -> bytes:
    try:
        body = _encode_request([code, inputs, memory_mb, libs, env]).encode()
    except (TypeError, ValueError) as exc:
        raise ToolError(f"python task input is not JSON-serialisable: {exc}", error_kind="python") from exc
    return len(body).to_bytes(HEADER_BYTES, "big") + body


def _plain(value: object) -> object:
    """JSON encoder hook: read-only mappings (the runtime's frozen input) become dicts."""
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not a JSON value")


_encode_request = json.JSONEncoder(separators=(",", ":"), default=_plain).encode


def _user_error(reply: dict[str, str]) -> ToolError:
    py: dict[str, object] = {"exception": reply["exception"], "traceback": reply["traceback"]}
    if "stdout" in reply:
        py["stdout"] = reply["stdout"]
    return ToolError(reply["message"], error_kind=reply["kind"], details={"py": py})


def _timeout_error(timeout: float) -> ToolError:
    return ToolError(
        f"python code did not finish within {timeout:g} s; its process was killed",
        error_kind="timeout",
        retryable=True,
        details={"py": {"exception": "TimeoutError", "traceback": None}},
    )


def _crash_error(code: int | None) -> ToolError:
    details: dict[str, object] = {"py": {"exception": None, "traceback": None, "exit_code": code}}
    if code is None:
        return ToolError("python child process closed its pipes and stopped answering", error_kind="crash")
    if code == -signal.SIGKILL:
        message = "python child process was killed by SIGKILL (most likely out of memory)"
        return ToolError(message, error_kind="memory", details=details)
    if code < 0:
        return ToolError(
            f"python child process was killed by signal {_signal_name(-code)}",
            error_kind="crash",
            details=details,
        )
    return ToolError(f"python child process exited with code {code}", error_kind="crash", details=details)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _closed_error() -> ToolError:
    return ToolError("the python process pool was closed", error_kind="crash")
