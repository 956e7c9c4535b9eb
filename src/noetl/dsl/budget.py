"""The render budget: how much work and output one template render may take (issue 10, item 8).

A template runs in Jinja2's sandbox, which stops it reaching Python internals but not from spending
unbounded CPU (nested loops) or memory (``'a' * 10**9``). A :class:`Budget` bounds both:

* **operations**: every loop iteration, attribute or item lookup, function or method call and filter
  application spends one (a filter over a sized value spends its length too); past
  :data:`MAX_OPERATIONS` the render fails;
* **size**: a string, list or number a template would build (``*``, ``**``, ``+``, ``~``, ``%``,
  padding and formatting widths, ``replace``) is refused *before* it is built when it would exceed
  :data:`MAX_OUTPUT` characters (or items, or digits), and so is rendered text longer than that.

Counting is deterministic (no clock): the same template on the same data always passes or fails
alike. A render with no budget in force gets a fresh default one (:func:`current`); a caller that
renders off its event loop can pass its own and :meth:`Budget.cancel` it when its deadline passes.
:func:`instrument_tree` and :func:`wrap_filters` put the counting hooks into the compiled templates;
the environment in :mod:`noetl.dsl.jinja` routes calls and binary operators here.
"""

from __future__ import annotations

import contextvars
import functools
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from noetl.errors import TemplateError

if TYPE_CHECKING:  # Jinja2 is imported with the first template, not with this module (start-up time)
    from jinja2 import nodes

MAX_OPERATIONS: Final = 1_000_000
MAX_OUTPUT: Final = 10_000_000
ITERATE: Final = "__noetl_iterate"
CONCAT: Final = "__noetl_concat"
INTERCEPTED_BINOPS: Final = frozenset({"*", "**", "+", "%"})

_WIDTH_ARGUMENT_FILTERS: Final = frozenset({"center", "indent", "slice", "batch", "wordwrap", "truncate"})
_WIDTH_METHODS: Final = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
_FORMAT_WIDTH = re.compile(r"%[-+ #0]*(\d+)|\{[^{}]*?:[^{}]*?(\d+)[^{}]*\}")


_CONTAINERS: Final = frozenset({list, tuple, dict, set, frozenset})
_BYTES_PER_OPERATION: Final = 1024
"""Building a string or list costs one operation per this many characters or items, on top of one."""


class BudgetExceeded(TemplateError):
    """A render went over its budget (or was cancelled because its step's deadline passed)."""


class Budget:
    """Operations left and the size limit of one render (or of the renders of one task)."""

    __slots__ = ("cancelled", "left", "max_operations", "max_output")

    def __init__(self, max_operations: int = MAX_OPERATIONS, max_output: int = MAX_OUTPUT) -> None:
        self.max_operations = max_operations
        self.max_output = max_output
        self.left = max_operations
        self.cancelled = False

    def spend(self, operations: int = 1) -> None:
        self.left -= operations
        if self.left < 0 or self.cancelled:
            self._exceeded()

    def cancel(self) -> None:
        """Stop the render at its next operation (its step timed out)."""
        self.cancelled = True

    def check_size(self, size: float, what: str) -> None:
        if size > self.max_output:
            raise BudgetExceeded(
                f"template exceeded its render budget: {what} of {_count(size)} is over the limit "
                f"of {self.max_output:,} (refused before it was built)"
            )

    def _exceeded(self) -> None:
        if self.cancelled:
            raise BudgetExceeded("template rendering was stopped: its step's timeout passed")
        raise BudgetExceeded(
            f"template exceeded its render budget of {self.max_operations:,} operations "
            "(loop iterations, calls, filter items)"
        )


_current: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("noetl_render_budget", default=None)


def current() -> Budget:
    """The budget in force (a fresh default one when none is: each render outside :func:`active`)."""
    found = _current.get()
    return found if found is not None else Budget()


@contextmanager
def active(budget: Budget) -> Iterator[Budget]:
    """Make ``budget`` the one the renders inside the block spend (in this thread or task)."""
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)


def in_force() -> Budget | None:
    return _current.get()


def enter(budget: Budget) -> contextvars.Token[Budget | None]:
    """:func:`active` without the context manager (a few microseconds less on hot paths)."""
    return _current.set(budget)


def leave(token: contextvars.Token[Budget | None]) -> None:
    _current.reset(token)


def tick() -> None:
    """One attribute or item lookup: spent when a render is in progress (free for direct lookups)."""
    budget = _current.get()
    if budget is not None:
        budget.spend()


# --- hooks in compiled templates ----------------------------------------------------------------------


def instrument_tree(tree: nodes.Node) -> None:
    """Route every ``for`` loop's iterable and every ``~`` concatenation of ``tree`` through the budget."""
    from jinja2 import nodes

    for node in tree.find_all(nodes.For):
        assert isinstance(node, nodes.For)
        node.iter = nodes.Filter(node.iter, ITERATE, [], [], None, None, lineno=node.lineno)
    _replace_concat(tree)


def _replace_concat(node: nodes.Node) -> None:
    from jinja2 import nodes

    for field in node.fields:
        value = getattr(node, field, None)
        if isinstance(value, nodes.Concat):
            setattr(node, field, _concat_call(value))
            _replace_concat(getattr(node, field))
        elif isinstance(value, nodes.Node):
            _replace_concat(value)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, nodes.Concat):
                    value[index] = _concat_call(item)
                if isinstance(value[index], nodes.Node):
                    _replace_concat(value[index])


def _concat_call(node: nodes.Concat) -> nodes.Filter:
    from jinja2 import nodes

    return nodes.Filter(
        nodes.List(node.nodes, lineno=node.lineno), CONCAT, [], [], None, None, lineno=node.lineno
    )


def iterate(values: Iterable[Any]) -> Iterator[Any]:
    """The ``for`` loop hook: one operation per item."""
    budget = current()
    for value in values:
        budget.spend()
        yield value


def concat(parts: list[Any]) -> str:
    """The ``~`` hook: the joined text, refused when too long."""
    texts = [str(part) for part in parts]
    size = sum(len(text) for text in texts)
    budget = current()
    budget.check_size(size, "a concatenated string")
    budget.spend(size // _BYTES_PER_OPERATION)
    return "".join(texts)


def wrap_filters(filters: Mapping[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """The filters, each spending one operation (plus the length of a sized input) per use, and
    refusing width-like arguments (``center(10**9)``, ``slice(10**9)``) over the size limit."""
    wrapped = {name: _counted(name, function) for name, function in filters.items()}
    wrapped[ITERATE] = iterate
    wrapped[CONCAT] = concat
    return wrapped


def _counted(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    checks_width = name in _WIDTH_ARGUMENT_FILTERS

    passes_context = getattr(function, "jinja_pass_arg", None) is not None

    @functools.wraps(function)  # keeps jinja_pass_arg (pass_context / pass_environment)
    def counted(*args: Any, **kwargs: Any) -> Any:
        values = args[1:] if passes_context else args
        budget = current()
        budget.spend(1 + _size(values[:1]))
        if checks_width:
            for value in (*values[1:], *kwargs.values()):
                if type(value) is int:
                    budget.check_size(value, f"argument of filter '{name}'")
        if name in ("format", "replace"):
            _check_text_call(budget, name, values, kwargs)
        return function(*args, **kwargs)

    return counted


def _size(args: tuple[Any, ...]) -> int:
    for value in args:
        if type(value) in _CONTAINERS:  # concrete types: an undefined value's len() would fail
            return len(value)
    return 0


# --- calls and operators (called by the environment) --------------------------------------------------


def check_call(obj: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Spend one operation for a call; refuse string methods that would build an oversized string."""
    budget = current()
    budget.spend()
    owner = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")
    if isinstance(owner, str | bytes):
        if name in _WIDTH_METHODS:
            width = args[0] if args else kwargs.get("width", kwargs.get("tabsize", 0))
            if type(width) is int:
                factor = len(owner) if name == "expandtabs" else 1
                budget.check_size(width * max(factor, 1), f"the width given to '{name}'")
        elif name in ("format", "format_map", "replace", "join"):
            _check_text_call(budget, name, (owner, *args), kwargs)


def _check_text_call(budget: Budget, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    if not args:
        return
    text = args[0]
    if name in ("format", "format_map") and isinstance(text, str):
        for match in _FORMAT_WIDTH.finditer(text):
            width = match.group(1) or match.group(2)
            if width and int(width) > budget.max_output:
                budget.check_size(int(width), "a formatting width")
    elif name == "replace" and isinstance(text, str) and len(args) >= 3:
        old, new = str(args[1]), str(args[2])
        count = text.count(old) if old else len(text) + 1
        budget.check_size(len(text) + count * max(len(new) - len(old), 0), "the result of 'replace'")
    elif name == "join" and len(args) >= 2 and isinstance(args[1], Sized):
        budget.spend(len(args[1]))


def check_format(text: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """``str.format``/``format_map``: refuse widths over the size limit, written or passed (``{:>{}}``)."""
    budget = current()
    budget.spend()
    _check_text_call(budget, "format", (text,), {})
    for value in (*args, *kwargs.values()):
        if type(value) is int:
            budget.check_size(value, "a number passed to format")


def binop(operator: str, left: Any, right: Any) -> None:
    """Refuse ``*``, ``**``, ``+`` and ``%`` whose result would exceed the size limit."""
    budget = current()
    budget.spend()
    if operator == "*":
        for sequence, times in ((left, right), (right, left)):
            if isinstance(sequence, str | bytes | list | tuple) and type(times) is int:
                budget.check_size(len(sequence) * times, "a repeated sequence")
                budget.spend(len(sequence) * max(times, 0) // _BYTES_PER_OPERATION)
    elif operator == "**":
        if type(left) is int and type(right) is int and right > 0 and abs(left) > 1:
            digits = right * math.log10(abs(left))
            budget.check_size(digits, "a number's digits")
    elif operator == "+":
        if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            budget.check_size(len(left) + len(right), "a concatenation")
            budget.spend((len(left) + len(right)) // _BYTES_PER_OPERATION)
    elif operator == "%" and isinstance(left, str):
        _check_text_call(budget, "format", (left,), {})


def check_output(size: int) -> None:
    current().check_size(size, "rendered text")


def _count(size: float) -> str:
    return f"{size:,.0f}" if size < 1e18 else f"about 10^{math.log10(size):.0f}"
