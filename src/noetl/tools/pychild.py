"""The python tool's child process: runs user code, one task at a time, for :mod:`noetl.tools.pypool`.

Started as ``python -m noetl.tools.pychild MEMORY_MB PARENT_PID SPIN_SECONDS [DIRECTORY]`` (by the pool,
in the sandbox's environment and as its task user; see :mod:`noetl.tools.sandbox`). It imports only
the standard library, so it starts fast, and it stays warm: modules imported by user code stay cached for the
next task, while every task gets fresh globals. Each distinct code string is compiled once.

Wire format, both directions, over the pipes the parent gave as stdin (requests) and stdout (replies)::

    request = u32 length (big endian) + JSON [code, input, memory_mb | null, libs | null, env | null]
    reply   = u32 length (big endian) + 1 tag byte + JSON body (the length counts the body only)
              tag "R": the body is the result;  tag "E": {kind, message, exception, traceback[, stdout]}

At start the child moves the two pipes to private descriptors (not inherited by processes the user
code starts), points descriptor 0 at /dev/null and descriptors 1 and 2 at an anonymous in-memory file,
so nothing that user code, its C libraries or its subprocesses print can corrupt the channel or reach
the worker's log. ``print()`` and writes to ``sys.stderr`` go to a per-task buffer, and what reached
descriptors 1 and 2 is appended to it after the task; when the task fails, the last 8 KiB of it come
back as ``stdout`` in the error (where the worker's redactor masks secrets like in any outcome),
otherwise it is dropped. The child also makes itself non-dumpable (other processes of the same user
cannot read its memory, environment or descriptors through /proc or ptrace), and empties its private
directory (DIRECTORY, its working directory and TMPDIR) after each task.

Error kinds sent back: ``python`` (an exception in user code, or a result JSON cannot hold),
``memory`` (MemoryError: the address space is capped with RLIMIT_AS), ``crash`` (user code raised
SystemExit; the child survives it). A child that dies or hangs is the parent's to handle.
"""

from __future__ import annotations

import io
import json
import os
import select
import sys
from time import perf_counter
from types import CodeType, ModuleType, TracebackType

TYPE_CHECKING = False  # not imported from typing: the child skips importing typing at all
if TYPE_CHECKING:
    from collections.abc import Mapping

REPLY_RESULT = ord("R")
REPLY_ERROR = ord("E")
HEADER_BYTES = 4
USER_FILENAME = "<python task>"
MODULE_NAME = "__noetl_task__"
STDOUT_TAIL_CHARS = 8192
COMPILE_CACHE_SIZE = 256
DEFAULT_MEMORY_MB = 1024
DEFAULT_SPIN_SECONDS = 0.0006
READ_SIZE = 1 << 16

_CO_VARKEYWORDS = 0x08
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_SIGKILL = 9
_MISSING = object()
GLOBALS_KEY = "__noetl_globals__"
"""Input key under which the parent sends upstream's extra globals; removed before the code runs."""
WRAPPED_FUNCTION = "__noetl_task_body__"
WRAPPED_RESULT = "__noetl_task_result__"
_compiled: dict[str, tuple[CodeType, bool]] = {}


class _NotJSON(TypeError):
    """Raised by the result encoder for a value JSON cannot hold; the message is its type name."""


def _refuse(value: object) -> object:
    raise _NotJSON(type(value).__name__)


_encode_result = json.JSONEncoder(allow_nan=False, separators=(",", ":"), default=_refuse).encode
_encode_reply = json.JSONEncoder(separators=(",", ":")).encode


class MemoryLimit:
    """The child's RLIMIT_AS soft limit; changed only when a task asks for a different cap."""

    def __init__(self, default_mb: int) -> None:
        import resource

        self._resource = resource
        self.default_mb = default_mb
        self.current_mb = 0
        self._hard = resource.getrlimit(resource.RLIMIT_AS)[1]

    def apply(self, memory_mb: int | None) -> None:
        wanted = memory_mb or self.default_mb
        if wanted == self.current_mb:
            return
        soft = wanted * 1024 * 1024
        if self._hard != self._resource.RLIM_INFINITY:
            soft = min(soft, self._hard)
        self._resource.setrlimit(self._resource.RLIMIT_AS, (soft, self._hard))
        self.current_mb = wanted


def run_task(
    code: str,
    inputs: dict[str, object],
    libs: Mapping[str, str] | None,
    env: Mapping[str, str] | None,
    limit: MemoryLimit,
    directory: str = "",
) -> tuple[int, str]:
    """Run one task; return (reply tag, JSON body). Never raises."""
    captured = io.StringIO()
    saved_env = _set_env(env) if env else None
    sys.stdout = sys.stderr = captured  # stderr too: nothing user code prints reaches the worker's log
    try:
        try:
            result = _execute(code, inputs, libs)
        except BaseException as exc:  # SystemExit and KeyboardInterrupt too: they end the task, not the child
            _collect_output(captured)
            return REPLY_ERROR, _user_error(exc, code, captured, limit)
        try:
            return REPLY_RESULT, _encode_result(result)
        except MemoryError as exc:
            return REPLY_ERROR, _user_error(exc, code, captured, limit)
        except Exception as exc:  # TypeError, ValueError (NaN, cycles), RecursionError from the encoder
            return REPLY_ERROR, _not_json(exc)
    finally:
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        sys.modules.pop(MODULE_NAME, None)
        if saved_env is not None:
            _restore_env(saved_env)
        _discard_output()
        if directory:
            _empty(directory)


def _collect_output(captured: io.StringIO) -> None:
    """Append what reached descriptors 1 and 2 during the task (its last 8 KiB) to ``captured``."""
    try:
        size = os.fstat(1).st_size
        if size:
            data = os.pread(1, STDOUT_TAIL_CHARS, max(0, size - STDOUT_TAIL_CHARS))
            captured.write(data.decode("utf-8", "replace"))
    except (OSError, ValueError):
        return


def _discard_output() -> None:
    """Empty the file behind descriptors 1 and 2 for the next task (a no-op when nothing was written)."""
    try:
        if os.fstat(1).st_size:
            os.ftruncate(1, 0)
            os.lseek(1, 0, os.SEEK_SET)
    except OSError:
        return


def _empty(directory: str) -> None:
    """Remove what the task left in the child's private directory, and go back into it."""
    try:
        os.chdir(directory)
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        path = os.path.join(directory, name)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                import shutil

                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
        except OSError:
            continue


def _execute(code: str, inputs: dict[str, object], libs: Mapping[str, str] | None) -> object:
    """Run the code in fresh globals; the result is ``result`` if assigned, else ``main(**input)``."""
    module = ModuleType(MODULE_NAME)
    namespace = module.__dict__
    extra = inputs.pop(GLOBALS_KEY, None)
    if isinstance(extra, dict):
        namespace.update(extra)  # upstream's globals (context, args, execution_id, step); input wins
    namespace.update(inputs)
    namespace.setdefault("input_data", inputs)  # an input key named input_data wins, as upstream
    if libs:
        _import_libs(namespace, libs)
    # Registered while it runs so that dataclasses, pickle and typing can find the module.
    sys.modules[MODULE_NAME] = module
    compiled, wrapped = _compile(code)
    exec(compiled, namespace)
    if wrapped:
        return namespace.pop(WRAPPED_RESULT)
    result = namespace.get("result", _MISSING)
    if result is not _MISSING and result is not inputs.get("result", _MISSING):
        return result
    main = namespace.get("main")
    if callable(main) and main is not inputs.get("main"):
        return main(**_main_arguments(main, inputs))
    return None


def _import_libs(namespace: dict[str, object], libs: Mapping[str, str]) -> None:
    import importlib

    for alias, module_name in libs.items():
        module, _, name = module_name.partition(":")  # "package.module:name" is `from ... import name`
        imported = importlib.import_module(module)
        namespace[alias] = getattr(imported, name) if name else imported


def _compile(code: str) -> tuple[CodeType, bool]:
    """The code compiled, and whether it was wrapped in a function for its top-level ``return``."""
    found = _compiled.get(code)
    if found is None:
        try:
            # dont_inherit: this module's `from __future__` flags must not leak into user code.
            found = compile(code, USER_FILENAME, "exec", dont_inherit=True), False
        except SyntaxError as exc:
            if "outside function" not in str(exc.msg):
                raise
            found = _compile_wrapped(code), True
        if len(_compiled) >= COMPILE_CACHE_SIZE:
            del _compiled[next(iter(_compiled))]
        _compiled[code] = found
    return found


def _compile_wrapped(code: str) -> CodeType:
    """Code with a top-level ``return`` (upstream runs task code as a function body): its statements
    become the body of a function whose return value is the result. Built on the syntax tree, so line
    numbers and string literals stay exactly as written."""
    import ast

    tree = ast.parse(code, USER_FILENAME)
    arguments = ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[])
    # falling off the end returns ``result`` if the code assigned it
    fallback = ast.parse("return locals().get('result')").body
    body = [*tree.body, *fallback]
    function = ast.FunctionDef(name=WRAPPED_FUNCTION, args=arguments, body=body, decorator_list=[])
    call = ast.Call(func=ast.Name(WRAPPED_FUNCTION, ast.Load()), args=[], keywords=[])
    store = ast.Assign(targets=[ast.Name(WRAPPED_RESULT, ast.Store())], value=call)
    module = ast.Module(body=[function, store], type_ignores=[])
    ast.fix_missing_locations(module)
    return compile(module, USER_FILENAME, "exec", dont_inherit=True)


def _main_arguments(main: object, inputs: dict[str, object]) -> dict[str, object]:
    """The input keys that ``main`` accepts by keyword (all of them when it takes ``**kwargs``)."""
    code = getattr(main, "__code__", None)
    if not isinstance(code, CodeType):
        return _arguments_by_signature(main, inputs)
    if code.co_flags & _CO_VARKEYWORDS:
        return inputs
    names = code.co_varnames[code.co_posonlyargcount : code.co_argcount + code.co_kwonlyargcount]
    return {name: inputs[name] for name in names if name in inputs}


def _arguments_by_signature(main: object, inputs: dict[str, object]) -> dict[str, object]:
    import inspect

    try:
        parameters = inspect.signature(main).parameters.values()  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return inputs
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return inputs
    names = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {name: value for name, value in inputs.items() if name in names}


def _set_env(env: Mapping[str, str]) -> dict[str, str | None]:
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    return saved


def _restore_env(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _not_json(exc: BaseException) -> str:
    detail = str(exc) if not isinstance(exc, _NotJSON) else exc.args[0]
    return _encode_reply(
        {
            "kind": "python",
            "message": f"result is not JSON-serialisable: {detail}",
            "exception": type(exc).__name__ if not isinstance(exc, _NotJSON) else "TypeError",
            "traceback": "",
        }
    )


def _user_error(exc: BaseException, code: str, captured: io.StringIO, limit: MemoryLimit) -> str:
    """The error reply for an exception raised by user code, with its traceback."""
    kind, message = _classify(exc, limit)
    reply: dict[str, object] = {
        "kind": kind,
        "message": message,
        "exception": type(exc).__name__,
        "traceback": _user_traceback(exc, code),
    }
    printed = _printed(captured)
    if printed:
        reply["stdout"] = printed[-STDOUT_TAIL_CHARS:]
    return _encode_reply(reply)


def _printed(captured: io.StringIO) -> str:
    try:
        return captured.getvalue()
    except ValueError:  # user code closed sys.stdout
        return ""


def _classify(exc: BaseException, limit: MemoryLimit) -> tuple[str, str]:
    if isinstance(exc, SystemExit):
        status = exc.code
        exit_code = 0 if status is None else status if isinstance(status, int) else 1
        said = "" if status is None or isinstance(status, int) else f": {_text(status)}"
        return "crash", f"python code called sys.exit() with exit code {exit_code}{said}"
    if isinstance(exc, MemoryError):
        return "memory", f"MemoryError: python code ran out of memory (limit {limit.current_mb} MiB)"
    text = exc.msg if isinstance(exc, SyntaxError) else _text(exc)
    message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    line = _user_line(exc)
    return "python", f"{message} (line {line})" if line else message


def _text(value: object) -> str:
    try:
        return str(value)
    except Exception:  # a broken __str__ must not hide the error being reported
        return f"<unprintable {type(value).__name__}>"


def _user_frames(exc: BaseException) -> TracebackType | None:
    """The traceback from the first user-code frame on: this module's frames are not the user's."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != USER_FILENAME:
        tb = tb.tb_next
    return tb


def _user_line(exc: BaseException) -> int | None:
    if isinstance(exc, SyntaxError) and exc.filename == USER_FILENAME:
        return exc.lineno
    line = None
    tb = _user_frames(exc)
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == USER_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _user_traceback(exc: BaseException, code: str) -> str:
    import linecache
    import traceback

    # Lets the traceback quote the user's source lines.
    linecache.cache[USER_FILENAME] = (len(code), None, code.splitlines(True), USER_FILENAME)
    try:
        return "".join(traceback.format_exception(type(exc), exc, _user_frames(exc)))
    except Exception:  # never lose the error because its traceback cannot be formatted
        return f"{type(exc).__name__}: {_text(exc)}\n"


class Requests:
    """Reads request frames from a non-blocking pipe.

    Waiting for the next request first polls for ``spin_seconds`` and only then blocks: tasks
    often come back to back, and waking a sleeping process costs more than the task itself on
    many (virtual) machines. The spin is short enough that an idle child costs nothing measurable.
    """

    def __init__(self, fd: int, spin_seconds: float) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._spin = spin_seconds
        self._buffer = bytearray()
        self._missing = HEADER_BYTES

    def next(self) -> bytearray | None:
        """The next request body, or None when the parent closed the pipe."""
        buffer = self._buffer
        while True:
            if len(buffer) >= HEADER_BYTES:
                end = HEADER_BYTES + int.from_bytes(buffer[:HEADER_BYTES], "big")
                if len(buffer) >= end:
                    body = buffer[HEADER_BYTES:end]
                    del buffer[:end]
                    return body
                self._missing = end - len(buffer)
            chunk = self._read(max(READ_SIZE, self._missing))
            if not chunk:
                return None
            buffer += chunk

    def _read(self, size: int) -> bytes:
        deadline = perf_counter() + self._spin
        while True:
            try:
                return os.read(self._fd, size)
            except BlockingIOError:
                if perf_counter() >= deadline:
                    break
        select.select([self._fd], [], [])
        return os.read(self._fd, size)


def serve(requests: Requests, reply_fd: int, limit: MemoryLimit, directory: str = "") -> None:
    """Answer requests until the parent closes the request pipe."""
    while (request := requests.next()) is not None:
        code, inputs, memory_mb, libs, env = json.loads(request)
        limit.apply(memory_mb)
        tag, body = run_task(code, inputs, libs, env, limit, directory)
        _send(reply_fd, tag, body.encode())


def _send(fd: int, tag: int, body: bytes) -> None:
    view = memoryview(len(body).to_bytes(HEADER_BYTES, "big") + bytes((tag,)) + body)
    while view:
        view = view[os.write(fd, view) :]


def _take_channel() -> tuple[int, int]:
    """Move the request/reply pipes off descriptors 0 and 1 (os.dup makes them non-inheritable);
    descriptors 1 and 2 then write to an anonymous file read back after each task."""
    requests_fd, reply_fd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    output = _output_file()
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.close(output)
    return requests_fd, reply_fd


def _output_file() -> int:
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None:
        try:
            fd: int = memfd_create("noetl-task-output", 0)
            return fd
        except OSError:
            pass
    return os.open(os.devnull, os.O_WRONLY)


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this child when the parent dies, even in the middle of user code, and
    make the child non-dumpable (see the module docstring)."""
    if sys.platform != "linux":
        return
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
        prctl(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0)
        prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:
        os._exit(0)


def main(argv: list[str]) -> None:
    memory_mb = int(argv[1]) if len(argv) > 1 else DEFAULT_MEMORY_MB
    if len(argv) > 2:
        _die_with_parent(int(argv[2]))
    spin_seconds = float(argv[3]) if len(argv) > 3 else DEFAULT_SPIN_SECONDS
    directory = argv[4] if len(argv) > 4 else ""
    requests_fd, reply_fd = _take_channel()
    limit = MemoryLimit(memory_mb)
    limit.apply(None)
    serve(Requests(requests_fd, spin_seconds), reply_fd, limit, directory)


if __name__ == "__main__":
    main(sys.argv)
