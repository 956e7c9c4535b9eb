"""The ``python`` tool: runs a task's code in a warm child process, never in the runtime's own.

Fields (REFERENCE §4.4, DECISIONS 8):

* ``code``: top-level statements; the value assigned to ``result`` is the task's result. Legacy:
  when no ``result`` is assigned and a callable ``main`` is defined, the result is
  ``main(**input)`` (only the input keys ``main`` accepts, unless it takes ``**kwargs``).
  The result must be JSON-serialisable. The input's keys are globals, and so is ``input_data``.
* ``libs``: a map ``{alias: module}`` imports each module under its alias, ``{alias: {from: module,
  import: name}}`` imports ``name`` from ``module``; a list of package names is accepted and ignored
  (packages are not installed at run time).
* Globals besides the input's keys and ``input_data``, as upstream has them: ``args`` (the input),
  ``execution_id``, ``step`` (the step's name) and ``context`` (the task's render context: workload,
  variables, earlier steps' results). Code with a top-level ``return`` runs as a function body whose
  return value (or ``result``, if it falls off the end) is the result.
* ``timeout_seconds`` / ``timeout`` (seconds, or a map with ``total`` or ``read``): the smallest
  of these and the runtime's timeout for the call applies.
* ``memory_mb``: address-space cap of the child for this task (the pool's default otherwise).
* ``env``: environment variables set while the task runs.
* ``assert`` (upstream's): ``{expects: [input keys], returns: [result keys]}``; a missing (or null)
  expected input, or a result that is not a map holding every listed key, fails the task.

Errors are :class:`noetl.errors.ToolError` with ``error_kind`` ``python``, ``timeout`` (retryable),
``crash`` or ``memory`` and ``details["py"] = {exception, traceback}`` (plus ``stdout``, the last
8 KiB printed by a failed task; what a successful task prints is dropped). See
:mod:`noetl.tools.pypool` for the process pool and :mod:`noetl.tools.pychild` for the child.
"""

from __future__ import annotations

import atexit
from collections.abc import Mapping
from typing import cast

from noetl.dsl.model import JSON
from noetl.errors import ToolConfigError, ToolError
from noetl.tools import fields
from noetl.tools.base import Call
from noetl.tools.pychild import GLOBALS_KEY
from noetl.tools.pypool import PythonPool

_default_pool: PythonPool | None = None


def default_pool() -> PythonPool:
    """The pool used when the runtime provides none: created on first use, killed at interpreter exit."""
    global _default_pool
    if _default_pool is None or _default_pool.closed:
        _default_pool = PythonPool()
        atexit.register(_default_pool.kill_now)
    return _default_pool


class PythonTool:
    """Runs ``code`` with the task's input as globals; the result is the value of ``result``."""

    kind = "python"
    config_fields: Mapping[str, tuple[type, ...]] = {
        "code": (str,),
        "libs": (dict, list),
        "timeout_seconds": (int, float),
        "timeout": (int, float, dict),
        "memory_mb": (int,),
        "env": (dict,),
        "assert": (dict,),
        "script": (dict,),
    }
    required_fields: tuple[tuple[str, ...], ...] = (("code", "script"),)

    async def run(self, call: Call) -> JSON:
        config = call.config
        code = config.get("code")
        if not isinstance(code, str):
            raise ToolConfigError(
                "field 'code' of a python task must be a string", step=call.step, field="code"
            )
        expects, returns = _assertions(config, call)
        missing = [name for name in expects if call.input.get(name) is None]
        if missing:
            raise _assert_error(call, f"input {', '.join(repr(m) for m in missing)} missing (assert.expects)")
        pool = call.services.python_pool or default_pool()
        try:
            result: JSON = await pool.run(
                code,
                _inputs(call),
                timeout=fields.timeout(call),
                memory_mb=_memory_mb(config, call),
                libs=_libs(config, call),
                env=_env(config, call),
                path=call.path,
            )
        except ToolError as exc:
            if exc.step is None:
                exc.step = call.step
            raise
        absent = [name for name in returns if not isinstance(result, dict) or name not in result]
        if absent:
            raise _assert_error(call, f"result lacks {', '.join(repr(a) for a in absent)} (assert.returns)")
        return result


def _assertions(config: Mapping[str, JSON], call: Call) -> tuple[list[str], list[str]]:
    """Upstream's ``assert: {expects: [input keys], returns: [result keys]}``, checked."""
    spec = config.get("assert")
    if spec is None:
        return [], []
    expects = spec.get("expects") or [] if isinstance(spec, dict) else None
    returns = spec.get("returns") or [] if isinstance(spec, dict) else None
    if not (
        isinstance(spec, dict) and set(spec) <= {"expects", "returns"} and _names(expects) and _names(returns)
    ):
        raise ToolConfigError(
            "field 'assert' of a python task must be {expects: [input keys], returns: [result keys]}",
            step=call.step,
            field="assert",
        )
    return cast(list[str], expects), cast(list[str], returns)


def _names(value: JSON) -> bool:
    return isinstance(value, list) and all(isinstance(name, str) for name in value)


def _assert_error(call: Call, message: str) -> ToolError:
    return ToolError(f"assertion failed: {message}", error_kind="python", retryable=False, step=call.step)


def _inputs(call: Call) -> dict[str, JSON]:
    """The input, plus upstream's globals ``args`` (the input), ``execution_id``, ``step`` (the step's
    name) and ``context`` (the task's render context), sent under a key the child removes; the
    input's own keys win over them."""
    extra: dict[str, JSON] = {"args": dict(call.input), "execution_id": call.execution_id, "step": call.step}
    if call.context is not None:
        extra["context"] = dict(call.context)
    return {**call.input, GLOBALS_KEY: extra}


def _memory_mb(config: Mapping[str, JSON], call: Call) -> int | None:
    value = config.get("memory_mb")
    if value is None:
        return None
    number = fields.number(value)
    if number is None or number < 1 or number != int(number):
        raise ToolConfigError(
            f"field 'memory_mb' of a python task must be a positive whole number, got {value!r}",
            step=call.step,
            field="memory_mb",
        )
    return int(number)


def _libs(config: Mapping[str, JSON], call: Call) -> dict[str, str] | None:
    """``{alias: module}`` to import; a list of package names means nothing to do."""
    libs = config.get("libs")
    if libs is None or isinstance(libs, list):
        return None
    if isinstance(libs, dict) and all(_lib(module) is not None for module in libs.values()):
        return {alias: str(_lib(module)) for alias, module in libs.items()}
    raise ToolConfigError(
        "field 'libs' of a python task must map aliases to module names, or list package names",
        step=call.step,
        field="libs",
    )


def _lib(value: JSON) -> str | None:
    """A module name, or upstream's ``{from: module, import: name}`` as ``module:name``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        module, name = value.get("from"), value.get("import")
        if isinstance(module, str) and isinstance(name, str):
            return f"{module}:{name}"
    return None


def _env(config: Mapping[str, JSON], call: Call) -> dict[str, str] | None:
    env = config.get("env")
    if env is None:
        return None
    if isinstance(env, dict) and not any(isinstance(v, dict | list) for v in env.values()):
        return {name: "" if value is None else _env_text(value) for name, value in env.items()}
    raise ToolConfigError(
        "field 'env' of a python task must map variable names to strings or numbers",
        step=call.step,
        field="env",
    )


def _env_text(value: JSON) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


TOOL = PythonTool()
