"""The playbook tool (DECISIONS 20) against a small fake child runner, and the workbook kind (21).

The fake stands in for the runtime's ``Services.run_child`` port and records what it was asked;
the real runner (child executions, catalogs, parent ids) is tested with the runtimes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from noetl.dsl.model import JSON
from noetl.errors import PlaybookError, ToolConfigError, ToolError
from noetl.tools.base import Call, Services
from noetl.tools.playbook import TOOL as PLAYBOOK
from noetl.tools.workbook import TOOL as WORKBOOK


class FakeChildRunner:
    """Answers like the runtime's child runner and records every request."""

    def __init__(
        self, answer: dict[str, Any] | None = None, *, hang: bool = False, refuse: Exception | None = None
    ) -> None:
        self.answer = answer or {
            "execution_id": "77",
            "status": "COMPLETED",
            "result": {"final": 42},
            "error": None,
        }
        self.hang = hang
        self.refuse = refuse
        self.requests: list[dict[str, Any]] = []
        self.cancelled = False

    async def __call__(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        if self.refuse is not None:
            raise self.refuse
        if not request["wait"]:
            return {"execution_id": self.answer["execution_id"], "status": "RUNNING"}
        if self.hang:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        return self.answer


def call(
    config: Mapping[str, JSON],
    runner: FakeChildRunner | None,
    *,
    input: Mapping[str, JSON] | None = None,
    timeout: float | None = None,
) -> Call:
    return Call(
        "e1", "start", "start", "playbook", config, input or {}, None, timeout, Services(run_child=runner)
    )


async def test_returns_child_result_and_sends_the_request() -> None:
    runner = FakeChildRunner()
    result = await PLAYBOOK.run(
        call({"path": "lib/child", "version": 2, "return_step": "start"}, runner, input={"n": 21})
    )
    assert result == {"final": 42}
    assert runner.requests == [
        {
            "path": "lib/child",
            "version": 2,
            "payload": {"n": 21},
            "return_step": "start",
            "wait": True,
            "timeout": None,  # no timeout: wait as long as the child runs
            "resumable": False,  # a plain call (no worker to park it on): waits in place
        }
    ]


@pytest.mark.parametrize(
    ("config", "payload"),
    [
        ({"args": {"b": 3, "c": 4}, "payload": {"z": 0}}, {"a": 1, "b": 3, "c": 4}),
        ({"args": {}, "payload": {"b": 9}}, {"a": 1, "b": 9}),
        ({"payload": {"c": 5}}, {"a": 1, "b": 2, "c": 5}),
        ({}, {"a": 1, "b": 2}),
    ],
)
async def test_child_workload_is_input_overlaid_by_args_else_payload(
    config: dict[str, JSON], payload: dict[str, JSON]
) -> None:
    runner = FakeChildRunner()
    await PLAYBOOK.run(call({"path": "c", **config}, runner, input={"a": 1, "b": 2}))
    assert runner.requests[0]["payload"] == payload


async def test_result_step_alias_and_catalog_id() -> None:
    runner = FakeChildRunner()
    await PLAYBOOK.run(call({"catalog_id": 123, "result_step": "end"}, runner))
    request = runner.requests[0]
    assert request["catalog_id"] == 123 and request["path"] == "123" and request["return_step"] == "end"


async def test_async_returns_id_and_status_without_waiting() -> None:
    runner = FakeChildRunner()
    result = await PLAYBOOK.run(call({"path": "c", "async": True}, runner))
    assert result == {"execution_id": "77", "status": "RUNNING"}
    assert runner.requests[0]["wait"] is False


async def test_failed_child_is_playbook_error() -> None:
    answer = {
        "execution_id": "88",
        "status": "FAILED",
        "result": None,
        "error": {"step": "start", "kind": "python", "message": "child broke"},
    }
    with pytest.raises(ToolError) as caught:
        await PLAYBOOK.run(call({"path": "lib/bad"}, FakeChildRunner(answer)))
    err = caught.value
    assert err.error_kind == "playbook" and err.step == "start"
    assert "child broke" in err.message and "88" in err.message and "lib/bad" in err.message
    assert err.details["playbook"] == {"execution_id": "88", "status": "FAILED", "error": answer["error"]}


async def test_child_that_cannot_start_is_playbook_error() -> None:
    runner = FakeChildRunner(refuse=PlaybookError("no playbook with path 'lib/nowhere'"))
    with pytest.raises(ToolError) as caught:
        await PLAYBOOK.run(call({"path": "lib/nowhere"}, runner))
    assert caught.value.error_kind == "playbook" and "lib/nowhere" in caught.value.message
    runner = FakeChildRunner(refuse=ToolError("child runner broke", error_kind="internal"))
    with pytest.raises(ToolError) as caught:
        await PLAYBOOK.run(call({"path": "x"}, runner))
    assert caught.value.error_kind == "internal"


async def test_timeout_stops_waiting_for_the_child() -> None:
    runner = FakeChildRunner(hang=True)
    with pytest.raises(ToolError) as caught:
        await PLAYBOOK.run(call({"path": "slow", "timeout": 0.1}, runner))
    assert caught.value.error_kind == "timeout" and caught.value.retryable is True
    assert runner.cancelled


async def test_without_child_runner_is_config_error() -> None:
    with pytest.raises(ToolConfigError, match="sub-playbooks"):
        await PLAYBOOK.run(call({"path": "c"}, None))


async def test_workbook_kind_never_runs() -> None:
    with pytest.raises(ToolConfigError, match="workbook task 'classify' was not resolved at load time"):
        await WORKBOOK.run(Call("e1", "start", "start", "workbook", {"name": "classify"}, {}))
