"""Execution ids for the local runtime: :func:`noetl.ids.new_id` as a string."""

from __future__ import annotations

from noetl.ids import new_id


def new_execution_id() -> str:
    return str(new_id())
