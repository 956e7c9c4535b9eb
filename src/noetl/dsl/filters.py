"""The template filters NoETL adds to standard Jinja2 (REFERENCE §4.15).

Standard Jinja2 already has ``int``, ``float``, ``string``, ``default``, ``lower``, ``upper``, ``trim``,
``join``, ``first``, ``last`` and ``length``; they stay as Jinja defines them. This module adds the rest and
replaces three whose Jinja form does not suit data templates: ``tojson`` (Jinja escapes HTML and sorts keys),
``items`` (Jinja returns an iterator and ignores strict undefined) and ``safe`` (without autoescaping it only
turned values into strings). Every filter is pure: no clock, no randomness, no I/O.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from jinja2 import StrictUndefined, Undefined

from noetl.dsl.views import MISSING, ResultView, plain


def tojson(value: object, indent: int | None = None) -> str:
    """Compact JSON (or indented when ``indent`` is given) of a value; views give their stored JSON."""
    separators = (",", ":") if indent is None else None
    return json.dumps(plain(value), ensure_ascii=False, separators=separators, indent=indent)


def fromjson(value: object) -> object:
    """Parse JSON text; a value that is already parsed (not a string) is returned unchanged."""
    if isinstance(value, bytes | bytearray):
        value = value.decode("utf-8")
    if not isinstance(value, str):
        return _defined(value)
    return json.loads(value)


def b64encode(value: object) -> str:
    """Base64 of a string's UTF-8 bytes (bytes are encoded as they are)."""
    raw = value if isinstance(value, bytes) else _text(value).encode("utf-8")
    return base64.b64encode(raw).decode("ascii")


def b64decode(value: object) -> str:
    """Decode base64 text into a UTF-8 string."""
    return base64.b64decode(_text(value), validate=True).decode("utf-8")


def split(value: object, sep: str | None = None, maxsplit: int = -1) -> list[str]:
    """``str.split``: on runs of whitespace by default, else on ``sep``."""
    return _text(value).split(sep, maxsplit)


def keys(value: object) -> list[object]:
    return list(_mapping(value).keys())


def values(value: object) -> list[object]:
    return list(_mapping(value).values())


def items(value: object) -> list[tuple[object, object]]:
    return list(_mapping(value).items())


def get(value: object, key: object, default: object = None) -> object:
    """``value[key]`` for a mapping, view or list, else ``default`` (also when ``value`` is null)."""
    value = _defined(value)
    if isinstance(value, ResultView):
        found = value.field(key)
        return default if found is MISSING else found
    if isinstance(value, Mapping):
        return value.get(key, default)
    if isinstance(value, Sequence) and not isinstance(value, str) and isinstance(key, int):
        return value[key] if -len(value) <= key < len(value) else default
    if value is None:
        return default
    raise TypeError(f"get needs a mapping or a list, got {type(value).__name__}")


def safe(value: object) -> object:
    """No-op kept for compatibility: NoETL templates never escape HTML, and values keep their type."""
    return value


def _defined(value: object) -> object:
    """``value``, failing for a strict undefined and reading a lenient one as null."""
    if isinstance(value, StrictUndefined):
        value._fail_with_undefined_error()
    return None if isinstance(value, Undefined) else value


def _mapping(value: object) -> Mapping[object, object]:
    value = _defined(value)
    if isinstance(value, ResultView):
        return value.value  # type: ignore[return-value]
    if isinstance(value, Mapping):
        return value
    if value is None:
        return {}
    raise TypeError(f"expected a mapping, got {type(value).__name__}")


def _text(value: object) -> str:
    value = _defined(value)
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


FILTERS: Final[Mapping[str, Callable[..., object]]] = {
    "tojson": tojson,
    "fromjson": fromjson,
    "b64encode": b64encode,
    "b64decode": b64decode,
    "split": split,
    "keys": keys,
    "values": values,
    "items": items,
    "get": get,
    "safe": safe,
}
"""Filters added to (or replacing) Jinja2's built-in ones."""
