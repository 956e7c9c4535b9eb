"""The ``noop`` tool: does nothing and returns ``{}``.

Steps that only route, ``set`` variables or apply a policy use it (REFERENCE §4.4, DECISIONS 8).
"""

from __future__ import annotations

from collections.abc import Mapping

from noetl.dsl.model import JSON
from noetl.tools import fields
from noetl.tools.base import Call


class NoopTool:
    """Returns an empty map."""

    kind = "noop"
    config_fields: Mapping[str, tuple[type, ...]] = dict(fields.TIMEOUTS)
    required_fields: tuple[tuple[str, ...], ...] = ()

    async def run(self, call: Call) -> JSON:
        return {}


TOOL = NoopTool()
