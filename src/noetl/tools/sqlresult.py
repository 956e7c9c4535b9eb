"""Database results as JSON (DECISIONS 8), shared by the ``postgres`` and ``duckdb`` tools.

A query becomes ``{columns, rows, row_count}`` with each row a map ``{column: value}`` (or a
list when ``as_objects`` is false; with duplicate column names the last one wins in a map); any
other statement becomes ``{row_count}``, the number of rows it changed (0 when not applicable).

Values are made JSON-safe: ``Decimal`` becomes a float (exact only up to 15-17 digits; cast to
text in SQL when every digit matters), date/time values ISO 8601 strings, intervals seconds (a
float), UUIDs strings, binary values base64 strings, non-finite floats the strings ``"NaN"``,
``"Infinity"``, ``"-Infinity"``, map keys strings, and anything else ``str(value)``.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import math
import uuid
from collections.abc import Iterable, Sequence

from noetl.dsl.model import JSON


def query(columns: Sequence[str], rows: Iterable[Sequence[object]], *, as_objects: bool = True) -> JSON:
    """``{columns, rows, row_count}`` for rows returned by a query."""
    names: list[JSON] = list(columns)
    converted: list[JSON] = []
    for row in rows:
        values = [to_json(value) for value in row]
        converted.append(dict(zip(columns, values, strict=True)) if as_objects else values)
    return {"columns": names, "rows": converted, "row_count": len(converted)}


def statement(row_count: int | None) -> JSON:
    """``{row_count}`` for a statement that returned no rows (negative counts read as 0)."""
    return {"row_count": max(row_count or 0, 0)}


def to_json(value: object) -> JSON:
    """One database value as JSON (see the module docstring for the conversions)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, decimal.Decimal):
        return _float(float(value))
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(item) for item in value]
    return str(value)


def _float(value: float) -> JSON:
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"
