"""Reading task fields that several tools share: timeouts, numbers and flags.

Every task may carry ``timeout`` (seconds, or a map such as ``{connect: 5, read: 15}``) and
``timeout_seconds``; the parser also folds them into ``Call.timeout``. Tools read them here, so a
tool called directly (as in tests) honours them as well. Strings that are not plain numbers
(``"30s"``) were already converted by the parser into ``Call.timeout`` and are skipped here.
"""

from __future__ import annotations

from collections.abc import Mapping

from noetl.dsl.model import JSON
from noetl.errors import ToolConfigError
from noetl.tools.base import Call

TIMEOUTS: Mapping[str, tuple[type, ...]] = {
    "timeout": (int, float, dict, type(None)),
    "timeout_seconds": (int, float, type(None)),
}
"""The timeout fields every tool accepts (merge into a tool's ``config_fields``)."""


def timeout(call: Call) -> float | None:
    """Seconds the call may take (None: no limit): the smallest of the runtime's and the task's."""
    limits = [call.timeout] if call.timeout is not None else []
    for name in ("timeout_seconds", "timeout"):
        value = call.config.get(name)
        if isinstance(value, dict):
            value = value.get("total", value.get("read"))
        seconds = _seconds(value, name, call)
        if seconds is not None:
            limits.append(seconds)
    return min(limits) if limits else None


def _seconds(value: JSON, name: str, call: Call) -> float | None:
    seconds = number(value)
    if seconds is None:
        return None
    if seconds <= 0:
        raise ToolConfigError(
            f"field '{name}' of a {call.kind} task must be a positive number of seconds, got {value!r}",
            step=call.step,
            field=name,
        )
    return seconds


def number(value: JSON) -> float | None:
    """``value`` as a float when it is a number or a numeric string; None otherwise."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def flag(value: JSON, *, default: bool) -> bool:
    """A boolean field: None gives ``default``; strings are false when "", "false", "0", "no",
    "none" or "null" (any case), as for rendered conditions (DECISIONS 10)."""
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "no", "none", "null")
    return bool(value)
