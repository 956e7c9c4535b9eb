"""Rendering templates in playbook values: sandboxed Jinja2 that keeps native types.

Rules (REFERENCE §4.15, DECISIONS 9 and 10):

* A string holding ``{{`` or ``{%`` is a template; other values are returned as they are, and
  :func:`render` walks dicts and lists, copying only the containers in which something was rendered.
* A string that is exactly one ``{{ expr }}`` (whitespace around allowed) gives the native value of
  ``expr``: list, dict, number, bool or null. Anything else renders to a string. Strings are never parsed
  as JSON, so ``"007"`` stays ``"007"``.
* Strict mode (the default) turns every use of an undefined variable or field into a
  :class:`~noetl.errors.TemplateError` that names it (``foo``, ``step_a.missing``). Lenient mode renders
  undefined values as ``""`` in text and as null for a single expression.
* ``a.b`` reads the key ``b`` of a dict before any dict method of that name, and step results wrapped
  by :func:`result_view` answer the aliases of DECISIONS 7 and 19. The context holds JSON values and
  views; a value taken straight from it is returned without copying (a view is unwrapped), while values
  built by an expression are converted to JSON types (tuples to lists, views to dicts).
* The environment is Jinja2's immutable sandbox: no private attributes, no mutation of lists or dicts,
  no clock and no randomness (``lipsum`` and ``random`` are removed), so rendering is a pure function of
  the template and the context. Every failure inside a template becomes a TemplateError.

Each distinct template string is compiled once per mode and kept in a bounded cache, because the engine
renders the same arcs and inputs thousands of times.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from noetl.dsl.views import ResultView, result_view
from noetl.errors import TemplateError

if TYPE_CHECKING:
    import functools

__all__ = [
    "TemplateError",
    "cache_info",
    "evaluate",
    "is_template",
    "render",
    "result_view",
    "truthy",
]

_FALSE_STRINGS: Final = frozenset({"", "false", "0", "no", "none", "null"})


def __getattr__(name: str) -> Any:
    if name == "filters":  # the filters NoETL adds to standard Jinja2 (imports Jinja2)
        from noetl.dsl.filters import FILTERS

        return FILTERS
    raise AttributeError(name)


def is_template(value: object) -> bool:
    """True for a string that holds ``{{`` or ``{%``."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def truthy(value: object) -> bool:
    """DECISIONS 10: null, false, 0, empty collections and the strings "", "false", "0", "no", "none",
    "null" (any case, surrounding whitespace ignored) are false; everything else is true."""
    if value is None or value is False:
        return False
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_STRINGS
    if _is_undefined(value):
        return False
    if isinstance(value, ResultView):
        return bool(value.value)
    if isinstance(value, bool | int | float):
        return value != 0
    try:
        return len(value) > 0  # type: ignore[arg-type]
    except TypeError:
        return True


def _is_undefined(value: object) -> bool:
    jinja2 = sys.modules.get("jinja2")  # an Undefined can only exist once Jinja2 is loaded
    return jinja2 is not None and isinstance(value, jinja2.Undefined)


def render(value: object, context: Mapping[str, object], *, strict: bool = True) -> object:
    """Render every template inside a JSON-like value; untouched parts are returned as they are."""
    if isinstance(value, str):
        return evaluate(value, context, strict=strict) if is_template(value) else value
    if isinstance(value, Mapping):
        return _render_mapping(value, context, strict)
    if isinstance(value, list | tuple):
        return _render_sequence(value, context, strict)
    return value


def _render_mapping(value: Mapping[str, object], context: Mapping[str, object], strict: bool) -> object:
    rendered: dict[str, object] | None = None
    for key, item in value.items():
        new = render(item, context, strict=strict)
        if new is not item:
            if rendered is None:
                rendered = dict(value)
            rendered[key] = new
    return value if rendered is None else rendered


def _render_sequence(
    value: list[object] | tuple[object, ...], context: Mapping[str, object], strict: bool
) -> object:
    rendered: list[object] | None = None
    for index, item in enumerate(value):
        new = render(item, context, strict=strict)
        if new is not item:
            if rendered is None:
                rendered = list(value)
            rendered[index] = new
    return value if rendered is None else rendered


def evaluate(template: str, context: Mapping[str, object], *, strict: bool = True) -> object:
    """Render one template string: the native value of a single ``{{ expr }}``, else a string."""
    from noetl.dsl import jinja  # Jinja2 is imported on the first template, not before

    return jinja.evaluate(template, context, strict=strict)


def cache_info() -> functools._CacheInfo:
    """Hits, misses and size of the compiled-template cache (one entry per template string and mode)."""
    from noetl.dsl import jinja

    return jinja.cache_info()
