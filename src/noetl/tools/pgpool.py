"""The postgres task's ``pool:`` field (upstream's): a named bound on the connections tasks hold at once.

Upstream keeps a psycopg connection pool per ``pool.name``. Here every call still opens its own
connection (a task leaves no session state behind), and ``pool:`` bounds how many connections the
tasks sharing a pool hold at the same time in one process:

* ``name``: tasks with the same name share the bound (default: one pool per connection target);
* ``max_size`` (default 10): connections held at once; ``min_size`` is accepted (nothing is kept
  open ahead of use);
* ``timeout`` (seconds, default 30): how long a task waits for a free connection before failing
  with a retryable ``postgres`` error;
* ``max_waiting`` (default 0: unbounded): tasks allowed to wait; one more fails at once;
* ``max_idle``, ``max_lifetime``, ``num_workers``: accepted, no effect (no idle connections are kept).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import weakref
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from noetl.dsl.model import JSON
from noetl.errors import ToolConfigError, ToolError
from noetl.tools import fields
from noetl.tools.base import Call

_INTEGERS = ("min_size", "max_size", "max_waiting", "num_workers")
_SECONDS = ("timeout", "max_idle", "max_lifetime")
_KNOWN = ("name", *_INTEGERS, *_SECONDS)


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """A task's ``pool:`` settings, checked."""

    name: str | None
    max_size: int = 10
    max_waiting: int = 0
    timeout: float = 30.0


@dataclass(slots=True)
class _Bound:
    slots: asyncio.Semaphore
    waiting: int = 0


_bounds: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Bound]] = weakref.WeakKeyDictionary()


def spec(call: Call) -> PoolSpec | None:
    """The task's ``pool:`` as a :class:`PoolSpec` (None without one); a bad value is a config error."""
    value = call.config.get("pool")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _config(call, f"field 'pool' must be a map of {', '.join(_KNOWN)}, got {value!r}")
    unknown = sorted(set(value) - set(_KNOWN))
    if unknown:
        raise _config(call, f"unknown key '{unknown[0]}' in field 'pool'; allowed: {', '.join(_KNOWN)}")
    name = value.get("name")
    if name is not None and not isinstance(name, str):
        raise _config(call, f"pool.name must be a string, got {name!r}")
    numbers = {key: _number(value, key, call) for key in (*_INTEGERS, *_SECONDS) if key in value}
    return PoolSpec(
        name=name,
        max_size=int(numbers.get("max_size", 10)),
        max_waiting=int(numbers.get("max_waiting", 0)),
        timeout=float(numbers.get("timeout", 30.0)),
    )


def _number(value: Mapping[str, JSON], key: str, call: Call) -> float:
    number = fields.number(value[key])
    whole = key not in _SECONDS
    if (
        number is None
        or number < (0 if key in ("min_size", "max_waiting") else 1)
        or (whole and number != int(number))
    ):
        kind = "a whole number" if whole else "a positive number of seconds"
        raise _config(call, f"pool.{key} must be {kind}, got {value[key]!r}")
    return number


def _config(call: Call, message: str) -> ToolConfigError:
    return ToolConfigError(message, step=call.step, field="pool")


@contextlib.asynccontextmanager
async def slot(pool: PoolSpec | None, conninfo: str, call: Call) -> AsyncIterator[None]:
    """Hold one of the pool's connections for the body (no bound without ``pool:``)."""
    if pool is None:
        yield
        return
    key = pool.name or hashlib.sha256(conninfo.encode()).hexdigest()
    bounds = _bounds.setdefault(asyncio.get_running_loop(), {})
    bound = bounds.get(key)
    if bound is None:
        bound = bounds[key] = _Bound(asyncio.Semaphore(pool.max_size))
    if pool.max_waiting and bound.slots.locked() and bound.waiting >= pool.max_waiting:
        name = pool.name or "default"
        raise _busy(call, f"postgres pool '{name}' has {bound.waiting} tasks waiting already")
    bound.waiting += 1
    try:
        async with asyncio.timeout(pool.timeout):
            await bound.slots.acquire()
    except TimeoutError:
        raise _busy(
            call, f"no free connection in postgres pool '{pool.name or 'default'}' within {pool.timeout:g} s"
        ) from None
    finally:
        bound.waiting -= 1
    try:
        yield
    finally:
        bound.slots.release()


def _busy(call: Call, message: str) -> ToolError:
    return ToolError(message, error_kind="postgres", retryable=True, step=call.step)
