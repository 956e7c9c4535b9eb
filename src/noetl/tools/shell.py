"""The ``shell`` tool: runs shell commands in a subprocess; the result is ``{stdout, stderr, exit_code}``.

Fields (REFERENCE §4.4, DECISIONS 8):

* ``command`` (a string) or ``cmds`` (a string or a list of strings run in order, stopping at the
  first non-zero exit); each runs as ``<shell> -c <command>``;
* ``shell`` (default ``/bin/sh``), ``cwd``, ``env`` (a map laid over the clean environment of
  :mod:`noetl.tools.sandbox`: ``PATH``, locale, ``HOME``/``TMPDIR``; the runtime's own variables are
  not inherited);
* ``timeout_seconds`` / ``timeout``: a deadline for all commands together.

With several commands, ``stdout`` and ``stderr`` are the concatenated outputs and ``exit_code``
is that of the last command run. A non-zero exit is a ``shell`` error carrying the result as its
data; on timeout or cancellation the command's whole process group is killed, and so it is when
the runtime process dies (:mod:`noetl.tools.watchdog`).

The commands run as the sandbox's task user when there is one, with the task's private directory
(created for it, removed after) as working directory unless ``cwd`` says otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass

from noetl.dsl.model import JSON
from noetl.errors import ToolConfigError, ToolError
from noetl.tools import fields, watchdog
from noetl.tools.base import Call
from noetl.tools.sandbox import Sandbox, inherited

DEFAULT_SHELL = "/bin/sh"
GATE_SHELL = "/bin/sh"
_GATE = 'IFS= read -r _ || exit 111; exec "$0" "$@" </dev/null'
"""Run first in the command's process: wait until the runtime has registered the new process group
with its watchdog (it writes a line on stdin), then become the command's shell (same process, same
group). A worker that dies in between closes the pipe, and the command never starts."""
_STDERR_TAIL = 500


@dataclass(frozen=True, slots=True)
class _Run:
    """The output of one command."""

    stdout: str
    stderr: str
    exit_code: int


class ShellTool:
    """Runs ``command`` or ``cmds`` with ``/bin/sh -c``."""

    kind = "shell"
    config_fields: Mapping[str, tuple[type, ...]] = {
        "command": (str,),
        "cmds": (str, list),
        "cwd": (str, type(None)),
        "env": (dict, type(None)),
        "shell": (str,),
        "script": (dict,),  # loaded into 'command' by the runner (noetl.runtime.scripts)
        **fields.TIMEOUTS,
    }
    required_fields: tuple[tuple[str, ...], ...] = (("command", "cmds", "script"),)

    async def run(self, call: Call) -> JSON:
        commands = _commands(call)
        shell = str(call.config.get("shell") or DEFAULT_SHELL)
        cwd = call.config.get("cwd")
        sandbox = call.services.sandbox or inherited()
        limit = fields.timeout(call)
        deadline = None if limit is None else time.monotonic() + limit
        runs: list[_Run] = []
        directory = sandbox.make_dir()
        try:
            env = sandbox.env(_task_env(call), home=directory)
            where = cwd if isinstance(cwd, str) else directory
            for command in commands:
                run = await _run_one(shell, command, where, env, sandbox, deadline, call)
                runs.append(run)
                if run.exit_code != 0:
                    break
        finally:
            sandbox.remove_dir(directory)
        result = _result(runs)
        if runs[-1].exit_code != 0:
            raise _exit_error(runs[-1], result, call)
        return result


def _commands(call: Call) -> list[str]:
    config = call.config
    if "command" in config and "cmds" in config:
        raise ToolConfigError(
            "a shell task takes 'command' or 'cmds', not both", step=call.step, field="cmds"
        )
    value = config.get("command", config.get("cmds"))
    commands = [value] if isinstance(value, str) else value
    if not isinstance(commands, list) or not commands or not all(isinstance(c, str) for c in commands):
        raise ToolConfigError(
            "a shell task needs 'command' (a string) or 'cmds' (a string or a non-empty list of strings)",
            step=call.step,
            field="cmds" if "cmds" in config else "command",
        )
    return [c for c in commands if isinstance(c, str)]


def _task_env(call: Call) -> dict[str, str | None]:
    """The task's ``env`` as text (None values unset a name)."""
    extra = call.config.get("env")
    if not extra:
        return {}
    if not isinstance(extra, dict):
        raise ToolConfigError("field 'env' of a shell task must be a map", step=call.step, field="env")
    return {name: None if value is None else _env_text(value) for name, value in extra.items()}


def _env_text(value: JSON) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


async def _run_one(
    shell: str,
    command: str,
    cwd: str | None,
    env: dict[str, str],
    sandbox: Sandbox,
    deadline: float | None,
    call: Call,
) -> _Run:
    if shutil.which(shell, path=env.get("PATH", os.defpath)) is None:
        raise ToolError(
            f"could not start '{shell}' in {cwd or 'the current directory'}: No such file or directory",
            error_kind="shell",
            step=call.step,
        )
    try:
        process = await asyncio.create_subprocess_exec(
            GATE_SHELL,
            "-c",
            _GATE,
            shell,
            "-c",
            command,
            stdin=asyncio.subprocess.PIPE,  # the gate; the command itself gets /dev/null
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,  # its own process group, so a timeout kills its children too
            user=sandbox.uid,
            group=sandbox.gid,
            extra_groups=sandbox.groups,
        )
    except OSError as exc:
        raise ToolError(
            f"could not start '{shell}' in {cwd or 'the current directory'}: {exc.strerror or exc}",
            error_kind="shell",
            step=call.step,
        ) from None
    watchdog.watch(process.pid)  # the group dies with this process too (a SIGKILLed worker) ...
    _open_gate(process)  # ... and only now may the command run
    try:
        return await _finish(process, deadline, call)
    finally:
        watchdog.forget(process.pid)


def _open_gate(process: asyncio.subprocess.Process) -> None:
    assert process.stdin is not None
    with contextlib.suppress(ConnectionError, RuntimeError):  # it died already: _finish reports that
        process.stdin.write(b"\n")
        process.stdin.close()


async def _finish(process: asyncio.subprocess.Process, deadline: float | None, call: Call) -> _Run:
    remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
    try:
        out, err = await asyncio.wait_for(process.communicate(), remaining)
    except TimeoutError:
        await _kill(process)
        raise ToolError(
            f"shell command did not finish within {fields.timeout(call)} s and was killed",
            error_kind="timeout",
            retryable=True,
            step=call.step,
        ) from None
    except asyncio.CancelledError:
        await _kill(process)
        raise
    return _Run(_text(out), _text(err), process.returncode if process.returncode is not None else -1)


async def _kill(process: asyncio.subprocess.Process) -> None:
    """Kill the command's process group and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _result(runs: list[_Run]) -> dict[str, JSON]:
    return {
        "stdout": "".join(run.stdout for run in runs),
        "stderr": "".join(run.stderr for run in runs),
        "exit_code": runs[-1].exit_code,
    }


def _exit_error(run: _Run, result: dict[str, JSON], call: Call) -> ToolError:
    tail = run.stderr.strip()[-_STDERR_TAIL:]
    return ToolError(
        f"shell command exited with code {run.exit_code}" + (f": {tail}" if tail else ""),
        error_kind="shell",
        details={"shell": {"exit_code": run.exit_code}},
        data=result,
        step=call.step,
    )


TOOL = ShellTool()
