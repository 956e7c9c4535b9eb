"""The ``noop`` tool: does nothing and returns ``{}``, or its ``result`` field (rendered) when given.

Steps that only route, ``set`` variables or apply a policy use it (REFERENCE §4.4, DECISIONS 8).
``result`` is upstream's way to give such a step a fixed (or templated) result.
"""

from __future__ import annotations

from collections.abc import Mapping

from noetl.dsl.model import JSON
from noetl.tools import fields
from noetl.tools.base import ANY_JSON, Call


class NoopTool:
    """Returns its ``result`` field, else an empty map."""

    kind = "noop"
    config_fields: Mapping[str, tuple[type, ...]] = {"result": ANY_JSON, **fields.TIMEOUTS}
    required_fields: tuple[tuple[str, ...], ...] = ()

    async def run(self, call: Call) -> JSON:
        return call.config.get("result", {})


TOOL = NoopTool()
