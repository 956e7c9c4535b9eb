"""The ``playbook`` tool: runs a child playbook through the runtime and returns its result.

Fields (REFERENCE §4.4 and §4.12, DECISIONS 20):

* ``path`` (or ``catalog_id``) and ``version``: which playbook to run;
* the child's workload: the task's ``input`` merged with ``args`` when non-empty, else with
  ``payload`` (those keys win over ``input``);
* ``return_step`` (alias ``result_step``): return that child step's result instead of the
  child's final result;
* ``async: true``: start the child and return ``{execution_id, status}`` at once;
* ``timeout`` / ``timeout_seconds``: how long to wait for the child (then it is cancelled);
* ``task``: upstream's label of the calling task (its fixtures write the calling step's name);
  accepted and not used.

How the wait costs nothing on a worker: with ``Call.resumable`` the runtime may raise
:class:`~noetl.tools.base.Suspended` from ``run_child`` instead of waiting, which ends the command's
run; it runs again when the child ends and this call then returns the child's outcome.

The runtime provides ``Services.run_child`` (see :data:`noetl.tools.base.ChildRunner`). A child
that does not end ``COMPLETED`` is an error of the calling task (``error_kind`` ``playbook``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from noetl.dsl.model import JSON
from noetl.errors import NoetlError, ToolConfigError, ToolError
from noetl.tools import fields
from noetl.tools.base import Call, ChildRunner


class PlaybookTool:
    """Starts a child execution and returns its result (or its id, with ``async``)."""

    kind = "playbook"
    config_fields: Mapping[str, tuple[type, ...]] = {
        "path": (str,),
        "catalog_id": (str, int),
        "version": (str, int, float),
        "args": (dict, type(None)),
        "payload": (dict, type(None)),
        "return_step": (str, type(None)),
        "result_step": (str, type(None)),
        "async": (bool,),
        "task": (str, type(None)),
        **fields.TIMEOUTS,
    }
    required_fields: tuple[tuple[str, ...], ...] = (("path", "catalog_id"),)

    async def run(self, call: Call) -> JSON:
        run_child = _runner(call)
        wait = not fields.flag(call.config.get("async"), default=False)
        request = _request(call, wait)
        limit = fields.timeout(call) if wait else None
        if wait:
            request.update(timeout=limit, resumable=call.resumable)
        try:
            async with asyncio.timeout(limit):
                child = await run_child(**request)
        except TimeoutError:
            raise ToolError(
                f"sub-playbook '{request['path']}' did not finish within {limit} s",
                error_kind="timeout",
                retryable=True,
                step=call.step,
            ) from None
        except ToolError:
            raise
        except NoetlError as exc:  # e.g. the child playbook is unknown or invalid: this task's error
            raise ToolError(
                f"sub-playbook '{request['path']}' could not run: {exc}",
                error_kind="playbook",
                step=call.step,
            ) from exc
        if not wait:
            return {"execution_id": child.get("execution_id"), "status": child.get("status")}
        return _result(child, request["path"], call)


def _runner(call: Call) -> ChildRunner:
    run_child = call.services.run_child
    if run_child is None:
        raise ToolConfigError(
            "this runtime cannot run sub-playbooks (no child runner)", step=call.step, field="kind"
        )
    return run_child


def _request(call: Call, wait: bool) -> dict[str, Any]:
    config = call.config
    path = config.get("path")
    catalog_id = config.get("catalog_id")
    request: dict[str, Any] = {
        "path": str(path if path not in (None, "") else catalog_id),
        "version": config.get("version"),
        "payload": _payload(call),
        "return_step": config.get("return_step") or config.get("result_step"),
        "wait": wait,
    }
    if catalog_id not in (None, ""):
        request["catalog_id"] = catalog_id
    return request


def _payload(call: Call) -> dict[str, JSON]:
    """The child's workload: ``input`` overlaid by non-empty ``args``, else by ``payload``."""
    args, payload = call.config.get("args"), call.config.get("payload")
    overlay = args if isinstance(args, dict) and args else payload
    if overlay is not None and not isinstance(overlay, dict):
        raise ToolConfigError(
            "field 'payload' of a playbook task must be a map", step=call.step, field="payload"
        )
    return {**call.input, **(overlay or {})}


def _result(child: Mapping[str, Any], path: str, call: Call) -> JSON:
    status = child.get("status")
    if status == "COMPLETED":
        result: JSON = child.get("result")
        return result
    execution_id = child.get("execution_id")
    error = child.get("error")
    reason = error.get("message") if isinstance(error, dict) else error
    raise ToolError(
        f"sub-playbook '{path}' (execution {execution_id}) ended {status}: {reason or 'no error given'}",
        error_kind="playbook",
        details={"playbook": {"execution_id": execution_id, "status": status, "error": error}},
        step=call.step,
    )


TOOL = PlaybookTool()
