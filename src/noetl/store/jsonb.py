"""How Python values become JSONB parameters.

Mappings of any kind (the engine hands out read-only ones) become objects; anything else JSON has
no type for (datetime, Decimal, UUID from tool results) becomes its ``str``, as the local runtime's
JSON output does, so both runtimes store the same values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from psycopg.types.json import Jsonb


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


def param(value: object) -> Jsonb:
    """``value`` as a JSONB query parameter."""
    return Jsonb(value, dumps=dumps)
