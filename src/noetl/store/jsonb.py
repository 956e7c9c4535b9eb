"""How Python values become JSON parameters.

Mappings of any kind (the engine hands out read-only ones) become objects; anything else JSON has
no type for (datetime, Decimal, UUID from tool results) becomes its ``str``, as the local runtime's
JSON output does, so both runtimes store the same values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from psycopg.types.json import Json


def _fallback(value: object) -> object:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


_encoder = json.JSONEncoder(default=_fallback, ensure_ascii=False, separators=(",", ":"))


def dumps(value: object) -> str:
    """Compact JSON text for ``value``."""
    return _encoder.encode(value)


def param(value: object) -> Json:
    """``value`` as a JSON query parameter: sent as ``json``, so a ``json`` column keeps the key order
    it was written in (parsing as ``jsonb`` would sort the keys); ``jsonb`` columns cast it on the way."""
    return Json(value, dumps=dumps)
