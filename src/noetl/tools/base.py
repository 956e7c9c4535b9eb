"""The Tool protocol: what every tool kind implements, and what the runtime hands it.

A tool turns one rendered task into a JSON result, or raises :class:`noetl.errors.ToolError`.
Tools never touch the store and never read ``os.environ``; everything they need arrives in the
:class:`Call` (rendered configuration, input, resolved credential) and in :class:`Services`
(long-lived helpers owned by the runtime: the python process pool, a sub-playbook runner).

Registration goes through the ``noetl.tools`` entry-point group (built-in tools too); see
:mod:`noetl.tools.registry`. Each tool declares ``config_fields``: the task fields it accepts,
with their types, checked when the playbook is loaded (see :func:`check_config`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from noetl.dsl.model import JSON
from noetl.errors import ToolConfigError

if TYPE_CHECKING:
    from noetl.tools.sandbox import Sandbox

ChildRunner = Callable[..., Awaitable[dict[str, Any]]]
"""``await run_child(path=..., payload=..., version=..., return_step=..., wait=True)``.

Returns ``{"execution_id", "status", "result", "error"}`` for a finished child, or
``{"execution_id", "status"}`` when ``wait`` is False. With ``resumable=True`` (and ``timeout``:
seconds the call may wait, counted from the child's start) a runtime that can park the command may
raise :class:`Suspended` instead of waiting for an unfinished child."""


class Suspended(BaseException):
    """The call waits for something that needs no CPU: end this run of the command, park it.

    Raised by a runtime's service (the worker's child runner), never by a tool's own code, and not
    an :class:`Exception`, so the task runner's error handling lets it through like cancellation.
    ``wait`` says what for (``{"kind": "playbook", "execution_id": ..., "seconds": ...}``); the
    command runs again from its start once that is ready, and the call then finds it done."""

    def __init__(self, wait: dict[str, Any]) -> None:
        super().__init__(f"waiting for {wait.get('kind')} {wait.get('execution_id', '')}".strip())
        self.wait = wait


@dataclass(slots=True)
class Services:
    """Runtime-owned helpers shared by all calls of one runtime (or one worker)."""

    python_pool: Any = None
    run_child: ChildRunner | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    sandbox: Sandbox | None = None
    """How python and shell tasks are contained (:mod:`noetl.tools.sandbox`); None: a clean environment."""
    trace_headers: Mapping[str, str] = field(default_factory=dict)
    """W3C trace context (``traceparent``) that outbound calls carry, when tracing is on."""


@dataclass(frozen=True, slots=True)
class Call:
    """One rendered task, ready to run."""

    execution_id: str
    step: str
    task: str
    kind: str
    config: Mapping[str, JSON]
    input: Mapping[str, JSON]
    credential: Mapping[str, Any] | None = None
    timeout: float | None = None
    services: Services = field(default_factory=Services)
    path: str = ""
    """The catalog path of the playbook the task belongs to (its scope for the python pool)."""
    resumable: bool = False
    """The command may end here and run again from its start (every task run before this call in
    the command was a sub-playbook call, which attaches to its child when run again)."""
    context: Mapping[str, JSON] | None = None
    """The task's render context as plain JSON, for tools that expose it (python's ``context``)."""


@runtime_checkable
class Tool(Protocol):
    """A tool kind. ``config_fields`` maps field name -> accepted Python types (JSON shapes)."""

    kind: str
    config_fields: Mapping[str, tuple[type, ...]]
    required_fields: tuple[tuple[str, ...], ...]

    async def run(self, call: Call) -> JSON: ...


ANY_JSON: tuple[type, ...] = (str, int, float, bool, list, dict, type(None))
TEMPLATABLE = (str,)


def check_config(tool: Tool, config: Mapping[str, JSON], *, step: str, task: str) -> None:
    """Check a task's fields against the tool's declared fields; raise ToolConfigError naming them.

    Strings are always accepted (they may be templates rendered later). ``required_fields`` is a
    tuple of alternatives groups: at least one field of each group must be present.
    """
    allowed = tool.config_fields
    for key, value in config.items():
        if key not in allowed:
            names = ", ".join(sorted(allowed)) or "(none)"
            raise ToolConfigError(
                f"unknown field '{key}' for tool kind '{tool.kind}' in task '{task}'; allowed: {names}",
                step=step,
                field=key,
            )
        types = allowed[key]
        if isinstance(value, (str, *types)):
            continue
        want = " or ".join(sorted({_json_name(t) for t in types}))
        raise ToolConfigError(
            f"field '{key}' of tool kind '{tool.kind}' must be {want}, got {_json_name(type(value))}",
            step=step,
            field=key,
        )
    for group in tool.required_fields:
        given = [name for name in group if name in config]
        if "script" in given and len(given) > 1:  # the code comes from one place (noetl.runtime.scripts)
            other = next(name for name in given if name != "script")
            raise ToolConfigError(
                f"task '{task}' of tool kind '{tool.kind}' gives both 'script' and '{other}': keep one",
                step=step,
                field="script",
            )
        if not given:
            raise ToolConfigError(
                f"tool kind '{tool.kind}' needs field '{' or '.join(group)}' in task '{task}'",
                step=step,
                field=group[0],
            )


def _json_name(t: type) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        list: "a list",
        dict: "a map",
        type(None): "null",
    }.get(t, t.__name__)
