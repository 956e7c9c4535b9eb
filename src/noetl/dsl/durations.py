"""Durations people type: ``90`` (seconds), ``30s``, ``15m``, ``24h``, ``7d``, ``2w``."""

from __future__ import annotations

import re

from noetl.errors import UsageError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_SECONDS = 10 * 365 * 86400.0


def seconds(text: str, field: str) -> float:
    """``text`` in seconds; UsageError naming ``field`` when it is not a duration of more than 0 and at
    most 10 years."""
    match = _DURATION.match(text)
    if match is None:
        raise UsageError(f"{field} {text!r} is not a duration such as 30m, 24h or 7d", field=field)
    value = float(match[1]) * _UNITS[match[2]]
    if not 0 < value <= MAX_SECONDS:
        raise UsageError(f"{field} {text!r} must be more than 0 and at most 10 years", field=field)
    return value
