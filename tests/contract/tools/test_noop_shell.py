"""The noop and shell tools, with real subprocesses (DECISIONS 8; REFERENCE §4.4)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from noetl.dsl.model import JSON
from noetl.errors import ToolError
from noetl.tools.base import Call
from noetl.tools.noop import TOOL as NOOP
from noetl.tools.shell import TOOL as SHELL


def call(config: Mapping[str, JSON], *, kind: str = "shell", timeout: float | None = None) -> Call:
    return Call("e1", "run", "run", kind, config, {}, None, timeout)


async def run(config: Mapping[str, JSON], **kw: Any) -> dict[str, Any]:
    result = await SHELL.run(call(config, **kw))
    assert isinstance(result, dict)
    return result


async def failure(config: Mapping[str, JSON], **kw: Any) -> ToolError:
    with pytest.raises(ToolError) as caught:
        await SHELL.run(call(config, **kw))
    return caught.value


async def _eventually(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.01)


def _gone(pid: int) -> bool:
    """The process no longer runs: reaped, or a zombie waiting for its new parent to reap it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")


async def test_noop_returns_empty_map() -> None:
    assert await NOOP.run(call({}, kind="noop")) == {}


async def test_command_result_shape() -> None:
    assert await run({"command": "echo hi; echo err 1>&2"}) == {
        "stdout": "hi\n",
        "stderr": "err\n",
        "exit_code": 0,
    }


async def test_cmds_run_in_order_and_concatenate() -> None:
    result = await run({"cmds": ["echo one", "echo two 1>&2", "echo three"]})
    assert result == {"stdout": "one\nthree\n", "stderr": "two\n", "exit_code": 0}
    assert (await run({"cmds": "echo single"}))["stdout"] == "single\n"


async def test_cmds_stop_at_first_failure(tmp_path: Path) -> None:
    marker = tmp_path / "never"
    err = await failure({"cmds": ["echo a", "echo bad 1>&2; exit 3", f"touch {marker}"]})
    assert err.error_kind == "shell" and err.retryable is False
    assert err.details == {"shell": {"exit_code": 3}}
    assert err.data == {"stdout": "a\n", "stderr": "bad\n", "exit_code": 3}
    assert "exited with code 3" in err.message and "bad" in err.message
    assert not marker.exists()


async def test_env_is_laid_over_a_clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOETL_TEST_INHERITED", "kept")
    monkeypatch.setenv("LANG", "C.UTF-8")
    result = await run(
        {
            "command": 'echo "$FOO $N $FLAG [${NOETL_TEST_INHERITED:-not inherited}] $LANG [${LANG2:-unset}]"',
            "env": {"FOO": "bar", "N": 5, "FLAG": True, "LANG2": None},
        }
    )
    assert result["stdout"] == "bar 5 true [not inherited] C.UTF-8 [unset]\n"


async def test_cwd_and_shell(tmp_path: Path) -> None:
    assert (await run({"command": "pwd", "cwd": str(tmp_path)}))["stdout"].strip() == str(tmp_path.resolve())
    # any program taking "-c CODE" serves as the shell; the test's own interpreter always exists
    result = await run({"command": "print('from python')", "shell": sys.executable})
    assert result["stdout"] == "from python\n"


async def test_missing_cwd_is_shell_error(tmp_path: Path) -> None:
    err = await failure({"command": "true", "cwd": str(tmp_path / "nowhere")})
    assert err.error_kind == "shell" and "could not start" in err.message


async def test_timeout_kills_the_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    err = await failure({"command": f"sleep 30 & echo $! > {pidfile}; wait", "timeout_seconds": 0.3})
    assert err.error_kind == "timeout" and err.retryable is True
    pid = int(pidfile.read_text())
    await _eventually(lambda: _gone(pid))


async def test_runtime_timeout_applies_too() -> None:
    err = await failure({"command": "sleep 30"}, timeout=0.2)
    assert err.error_kind == "timeout"


async def test_cancellation_kills_the_command(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    task = asyncio.ensure_future(SHELL.run(call({"command": f"sleep 30 & echo $! > {pidfile}; wait"})))
    await _eventually(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pid = int(pidfile.read_text())
    await _eventually(lambda: _gone(pid))
