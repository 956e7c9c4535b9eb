"""The ``workbook`` tool kind: registered so that playbooks naming it validate, never run.

A ``{kind: workbook, name: X, input: {...}}`` task is replaced by the workbook task ``X`` when the
playbook is loaded (DECISIONS 21, REFERENCE §4.13), so a call reaching :meth:`WorkbookTool.run`
means the loader was bypassed; it fails with a configuration error saying so.
"""

from __future__ import annotations

from collections.abc import Mapping

from noetl.dsl.model import JSON
from noetl.errors import ToolConfigError
from noetl.tools import fields
from noetl.tools.base import Call


class WorkbookTool:
    """Stands for a workbook reference that the parser resolves."""

    kind = "workbook"
    config_fields: Mapping[str, tuple[type, ...]] = {"name": (str,), **fields.TIMEOUTS}
    required_fields: tuple[tuple[str, ...], ...] = ()

    async def run(self, call: Call) -> JSON:
        name = call.config.get("name", call.task)
        raise ToolConfigError(
            f"workbook task '{name}' was not resolved at load time; workbook references are "
            "substituted when the playbook is parsed",
            step=call.step,
            field="name",
        )


TOOL = WorkbookTool()
