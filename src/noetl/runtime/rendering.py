"""Rendering a task's templates inside its step's timeout, without holding the event loop.

Most renders are tiny (``{{ step.field }}``): they run inline, under a small quick budget of
:data:`QUICK_OPERATIONS`. A render that needs more is started again - templates are pure, so running
one twice changes nothing - in a worker thread, under the full render budget
(:mod:`noetl.dsl.budget`), while the event loop keeps serving other executions. When the step's
deadline passes first, the budget is cancelled (the render stops at its next operation) and the task
fails with a ``timeout`` error that names the step and what was being rendered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final, TypeVar

from noetl.dsl import budget
from noetl.errors import ToolError

QUICK_OPERATIONS: Final = 20_000
"""Operations a render may take on the event loop before it is moved to a thread (~10 ms)."""

T = TypeVar("T")


class _Escalate(BaseException):
    """The quick budget ran out: render again off the loop. A BaseException so that no handler of
    template or tool errors on the way mistakes it for a failure of the template."""


class _QuickBudget(budget.Budget):
    __slots__ = ()

    def _exceeded(self) -> None:
        raise _Escalate()


async def render_within(render: Callable[[], T], deadline: float | None, what: str) -> T:
    """``render()`` inline if it is quick, else in a thread, within ``deadline`` (monotonic time)."""
    token = budget.enter(_QuickBudget(QUICK_OPERATIONS))
    try:
        return render()
    except _Escalate:
        pass
    finally:
        budget.leave(token)
    full = budget.Budget()

    def run() -> T:
        with budget.active(full):
            return render()

    future = asyncio.get_running_loop().run_in_executor(None, run)
    remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
    try:
        return await asyncio.wait_for(future, remaining)
    except TimeoutError:
        full.cancel()
        raise ToolError(f"{what} did not finish within the step's timeout", error_kind="timeout") from None
    except asyncio.CancelledError:
        full.cancel()
        raise
