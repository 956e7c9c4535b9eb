"""The python tool and its process pool, with real child processes.

User code runs in warm children (never in this process): results, legacy ``main``, errors with
tracebacks, crashes, timeouts, memory caps, cancellation and shutdown are all observed from here.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from types import MappingProxyType

import pytest

from noetl.errors import ToolConfigError, ToolError
from noetl.tools import python as python_tool
from noetl.tools.base import Call, Services, check_config
from noetl.tools.pypool import PythonPool


@pytest.fixture
async def pool() -> AsyncIterator[PythonPool]:
    pool = PythonPool(size=2)
    pool.start()
    yield pool
    await pool.close()


async def _eventually(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.01)


def _gone(pid: int) -> bool:
    """The process no longer runs: it was reaped, or it is a zombie awaiting reaping."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def _reaped(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def _raises(pool: PythonPool, code: str, **kw: object) -> ToolError:
    with pytest.raises(ToolError) as caught:
        await pool.run(code, {}, **kw)  # type: ignore[arg-type]
    return caught.value


# --- results ---------------------------------------------------------------------------------


async def test_result_is_the_value_assigned_to_result(pool: PythonPool) -> None:
    assert await pool.run("result = {'sum': a + b, 'items': [a, b]}", {"a": 1, "b": 2}) == {
        "sum": 3,
        "items": [1, 2],
    }


async def test_no_result_and_no_main_gives_none(pool: PythonPool) -> None:
    assert await pool.run("x = 1", {}) is None


async def test_legacy_main_gets_the_input_keys_it_accepts(pool: PythonPool) -> None:
    assert await pool.run("def main(a, b):\n    return a * b", {"a": 3, "b": 4, "c": 5}) == 12
    code = "def main(**kw):\n    return sorted(kw)"
    assert await pool.run(code, {"a": 1, "z": 2}) == ["a", "z"]
    assert await pool.run("def main():\n    return 1\nresult = 2", {}) == 2


async def test_input_keys_are_globals_and_input_data(pool: PythonPool) -> None:
    code = "result = [city, input_data['city'], sorted(input_data)]"
    assert await pool.run(code, {"city": "Oslo", "n": 1}) == ["Oslo", "Oslo", ["city", "n"]]


async def test_each_task_gets_fresh_globals_in_a_warm_process() -> None:
    pool = PythonPool(size=1)
    try:
        first = await pool.run("import os\nleak = 1\nresult = os.getpid()", {})
        second = await pool.run("import os\nresult = [os.getpid(), 'leak' in globals()]", {})
    finally:
        await pool.close()
    assert second == [first, False]


async def test_a_non_serialisable_result_is_a_python_error(pool: PythonPool) -> None:
    error = await _raises(pool, "result = {1, 2}")
    assert error.error_kind == "python"
    assert "result is not JSON-serialisable: set" in error.message
    error = await _raises(pool, "result = float('nan')")
    assert "result is not JSON-serialisable" in error.message


async def test_large_inputs_and_results_cross_the_pipes_intact(pool: PythonPool) -> None:
    text = "abc" * 1_000_000
    assert await pool.run("result = {'n': len(text), 'echo': text[::-1]}", {"text": text}) == {
        "n": len(text),
        "echo": text[::-1],
    }


# --- errors ----------------------------------------------------------------------------------


async def test_an_exception_carries_the_user_traceback(pool: PythonPool) -> None:
    error = await _raises(pool, "x = 1\ny = 0\nresult = x / y\n")
    assert error.error_kind == "python"
    assert error.retryable is False
    assert error.message == "ZeroDivisionError: division by zero (line 3)"
    py = error.details["py"]
    assert isinstance(py, dict)
    assert py["exception"] == "ZeroDivisionError"
    assert 'File "<python task>", line 3' in py["traceback"]
    assert "result = x / y" in py["traceback"]
    assert "pychild" not in py["traceback"]


async def test_an_exception_inside_main_names_the_line_in_main(pool: PythonPool) -> None:
    error = await _raises(pool, "def main():\n    return {}['missing']\n")
    assert error.message == "KeyError: 'missing' (line 2)"


async def test_a_syntax_error_is_a_python_error(pool: PythonPool) -> None:
    error = await _raises(pool, "result = (\n")
    assert error.error_kind == "python"
    assert error.details["py"]["exception"] == "SyntaxError"  # type: ignore[index]


async def test_sys_exit_is_a_crash_with_its_code_and_the_pool_goes_on(pool: PythonPool) -> None:
    error = await _raises(pool, "import sys\nsys.exit(3)")
    assert error.error_kind == "crash"
    assert "3" in error.message
    assert await pool.run("result = 1", {}) == 1


async def test_a_dying_child_is_a_crash_with_its_exit_code(pool: PythonPool) -> None:
    error = await _raises(pool, "import os\nos._exit(1)")
    assert error.error_kind == "crash"
    assert "exited with code 1" in error.message
    assert await pool.run("result = 'still here'", {}) == "still here"


async def test_an_endless_loop_times_out_and_its_child_is_replaced() -> None:
    pool = PythonPool(size=1)
    try:
        pid = await pool.run("import os\nresult = os.getpid()", {})
        error = await _raises(pool, "while True:\n    pass", timeout=1.0)
        assert error.error_kind == "timeout"
        assert error.retryable is True
        assert isinstance(pid, int)
        await _eventually(lambda: _gone(pid))
        assert await pool.run("import os\nresult = os.getpid()", {}) != pid
    finally:
        await pool.close()


async def test_a_2_gib_allocation_is_a_memory_error(pool: PythonPool) -> None:
    error = await _raises(pool, "data = bytearray(2 * 1024**3)")
    assert error.error_kind == "memory"
    assert await pool.run("result = len(bytearray(1024**2))", {}) == 1024**2


async def test_memory_cap_per_task(pool: PythonPool) -> None:
    code = "result = len(bytearray(40 * 1024**2))"
    assert await pool.run(code, {}) == 40 * 1024**2
    error = await _raises(pool, code, memory_mb=32)
    assert error.error_kind == "memory"
    assert "32 MiB" in error.message
    assert await pool.run(code, {}) == 40 * 1024**2


async def test_printing_does_not_break_the_channel(pool: PythonPool) -> None:
    code = (
        "import os, sys\nprint('x' * 100000)\nsys.stderr.write('to stderr')\nos.write(1, b'raw')\nresult = 7"
    )
    assert await pool.run(code, {}) == 7
    error = await _raises(pool, "print('before the failure')\nraise ValueError('bad')")
    assert error.details["py"]["stdout"] == "before the failure\n"  # type: ignore[index]


async def test_stderr_is_captured_with_the_task_not_written_to_the_workers_log(pool: PythonPool) -> None:
    """A secret a task writes to ``sys.stderr`` comes back in its error (which the worker masks)."""
    code = "import sys\nprint('out')\nsys.stderr.write('err-line\\n')\nraise ValueError('bad')"
    error = await _raises(pool, code)
    assert error.details["py"]["stdout"] == "out\nerr-line\n"  # type: ignore[index]
    assert await pool.run("import sys\nresult = sys.stderr is sys.__stderr__", {}) is False


# --- concurrency, cancellation, shutdown --------------------------------------------------------


async def test_many_concurrent_tasks_share_two_children(pool: PythonPool) -> None:
    results = await asyncio.gather(*(pool.run("result = n * n", {"n": n}) for n in range(200)))
    assert results == [n * n for n in range(200)]
    assert len(pool.pids()) <= 2


async def test_cancelling_a_task_kills_its_child_and_the_pool_recovers(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    code = "open(marker, 'w').close()\nwhile True:\n    pass"
    pool = PythonPool(size=1)
    try:
        task = asyncio.ensure_future(pool.run(code, {"marker": str(marker)}))
        await _eventually(marker.exists)
        [pid] = pool.pids()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await _eventually(lambda: _gone(pid))
        assert await pool.run("result = 'recovered'", {}) == "recovered"
        assert pid not in pool.pids()
    finally:
        await pool.close()


async def test_cancelling_a_waiting_task_keeps_the_pool_usable(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    pool = PythonPool(size=1)
    try:
        code = "import time\nopen(marker, 'w').close()\ntime.sleep(0.3)\nresult = 1"
        busy = asyncio.ensure_future(pool.run(code, {"marker": str(marker)}))
        await _eventually(marker.exists)
        waiting = asyncio.ensure_future(pool.run("result = 2", {}))
        await asyncio.sleep(0)
        waiting.cancel()
        assert await busy == 1
        assert await pool.run("result = 3", {}) == 3
        assert waiting.cancelled()
    finally:
        await pool.close()


async def test_close_leaves_no_child_processes() -> None:
    pool = PythonPool(size=2)
    await asyncio.gather(*(pool.run("result = 1", {}) for _ in range(4)))
    pids = pool.pids()
    assert len(pids) == 2
    await pool.close()
    await pool.close()
    await _eventually(lambda: all(_reaped(pid) for pid in pids))
    with pytest.raises(ToolError, match="closed"):
        await pool.run("result = 1", {})


async def test_closing_the_pool_fails_a_task_in_flight(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    pool = PythonPool(size=1)
    task = asyncio.ensure_future(
        pool.run("open(marker, 'w').close()\nwhile True:\n    pass", {"marker": str(marker)})
    )
    await _eventually(marker.exists)
    [pid] = pool.pids()
    await pool.close()
    with pytest.raises(ToolError, match="closed"):
        await task
    assert _reaped(pid)


# --- the tool --------------------------------------------------------------------------------


def _call(config: Mapping[str, object], inputs: Mapping[str, object], pool: PythonPool | None) -> Call:
    return Call(
        execution_id="e1",
        step="compute",
        task="task_0",
        kind="python",
        config=config,  # type: ignore[arg-type]
        input=inputs,  # type: ignore[arg-type]
        services=Services(python_pool=pool),
    )


async def test_tool_runs_code_with_libs_and_env(pool: PythonPool) -> None:
    config = {
        "code": "import os\nresult = [j.dumps(n), os.environ['GREETING']]",
        "libs": {"j": "json"},
        "env": {"GREETING": "hi"},
    }
    frozen_input = MappingProxyType({"n": [1]})
    assert await python_tool.TOOL.run(_call(config, frozen_input, pool)) == ["[1]", "hi"]
    listed = {"code": "result = 'ok'", "libs": ["pandas", "requests"]}
    assert await python_tool.TOOL.run(_call(listed, {}, pool)) == "ok"
    after = {"code": "import os\nresult = os.environ.get('GREETING')"}
    assert await python_tool.TOOL.run(_call(after, {}, pool)) is None


async def test_tool_errors_name_the_step_and_honour_timeout_seconds(pool: PythonPool) -> None:
    config = {"code": "import time\ntime.sleep(30)", "timeout_seconds": 0.5}
    with pytest.raises(ToolError) as caught:
        await python_tool.TOOL.run(_call(config, {}, pool))
    assert caught.value.error_kind == "timeout"
    assert caught.value.step == "compute"


async def test_tool_uses_a_default_pool_when_the_runtime_gives_none() -> None:
    try:
        assert await python_tool.TOOL.run(_call({"code": "result = x + 1"}, {"x": 1}, None)) == 2
    finally:
        await python_tool.default_pool().close()


def test_tool_config_is_checked() -> None:
    check_config(python_tool.TOOL, {"code": "result = 1", "memory_mb": 64}, step="s", task="t")
    with pytest.raises(ToolConfigError, match="'script'"):
        check_config(python_tool.TOOL, {"code": "x", "script": {}}, step="s", task="t")
    with pytest.raises(ToolConfigError, match="'code'"):
        check_config(python_tool.TOOL, {"libs": []}, step="s", task="t")


async def test_tool_rejects_a_bad_memory_cap(pool: PythonPool) -> None:
    with pytest.raises(ToolConfigError, match="memory_mb"):
        await python_tool.TOOL.run(_call({"code": "x = 1", "memory_mb": -5}, {}, pool))
