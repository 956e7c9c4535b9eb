"""Named SQL queries: each store module's statements live in ``sql/<module>.sql``.

A file holds queries under ``-- name: <name>`` headers; the lines up to the next header are the
query. Whole-line ``--`` comments document a query and are dropped on load, because psycopg would
read a ``%`` in them as a placeholder. Placeholders are psycopg's ``%(name)s``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import LiteralString

SQL_DIR = Path(__file__).with_name("sql")
HEADER = "-- name:"


@functools.cache
def load(module: str) -> Mapping[str, LiteralString]:
    """The queries of ``sql/<module>.sql`` by name."""
    return parse((SQL_DIR / f"{module}.sql").read_text(encoding="utf-8"))


def parse(text: str) -> dict[str, LiteralString]:
    queries: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(HEADER):
            current = queries.setdefault(stripped[len(HEADER) :].strip(), [])
        elif current is not None and stripped and not stripped.startswith("--"):
            current.append(line)
    # The files ship inside the package: as trusted as a literal in the code (mypy reads
    # LiteralString as str, so no cast is needed here; a stricter checker would want one).
    return {name: "\n".join(lines) for name, lines in queries.items()}
