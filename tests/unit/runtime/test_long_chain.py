"""A 3,000-step chain runs to completion on the local runtime (issue 17, item 6)."""

from __future__ import annotations

import asyncio

from noetl.runtime import loader
from noetl.runtime.local import LocalRuntime

STEPS = 3_000


def test_a_3000_step_chain_completes_locally() -> None:
    lines = ["apiVersion: noetl.io/v2", "kind: Playbook", "metadata: {name: chain}", "workflow:"]
    for k in range(1, STEPS + 1):
        lines += [f"  - step: s{k}", "    tool: {kind: noop}"]
        if k < STEPS:
            lines.append(f"    next: {{arcs: [{{step: s{k + 1}}}]}}")
    lines[-1:] = [lines[-1], f"    set: {{last: '{{{{ s{STEPS - 1} }}}}'}}"]  # a template that reads a result
    playbook = loader.parse("\n".join(lines) + "\n")

    async def run() -> tuple[str, int, object]:
        async with LocalRuntime() as runtime:
            execution = await runtime.execute(playbook, {})
            return execution.state.status, len(execution.state.executed), execution.state.variables

    status, executed, variables = asyncio.run(run())
    assert (status, executed) == ("COMPLETED", STEPS)
    assert variables == {"last": {}}
