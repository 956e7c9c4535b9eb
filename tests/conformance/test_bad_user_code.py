"""User code that crashes or hangs fails its step with a clear error; the runtime keeps going."""

from __future__ import annotations

import pytest

HEAD = """
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: bad_code}
"""


@pytest.mark.parametrize(
    ("code", "kind", "words"),
    [
        ("import sys\\nsys.exit(3)", "crash", "3"),
        ("import os\\nos._exit(7)", "crash", "7"),
        ("x = bytearray(2 * 1024 ** 3)", "memory", ""),
        ("while True:\\n    pass", "timeout", ""),
        ("raise ValueError('broken ' + 'input')", "python", "broken input"),
        ("result = object()", "python", "JSON"),
    ],
)
def test_crash_or_hang_fails_the_step_and_error_arc_still_runs(noetl_run, code, kind, words):
    r = noetl_run(
        HEAD
        + f"""
    workflow:
      - step: start
        tool: {{kind: python, timeout_seconds: 1, code: "{code}"}}
        next:
          arcs:
            - {{step: handled, when: "{{{{ output.status == 'error' }}}}"}}
      - step: handled
        tool: {{kind: python, input: {{k: "{{{{ output.error.kind if output is defined else 'x' }}}}"}}, code: "result = 'still running'"}}
    """
    )
    assert r.code == 0, r.stderr
    assert r.outcome["executed_steps"] == ["start", "handled"]
    assert r.results["handled"] == "still running"
    [error_event] = r.of("call.error", "start")
    error = error_event["data"]["error"]
    assert error["kind"] == kind
    assert words in error["message"]
    assert "Traceback" not in r.stderr


def test_unhandled_crash_exit_code_1_and_message(noetl_run):
    r = noetl_run(
        HEAD
        + """
    workflow:
      - step: start
        tool: {kind: python, code: "import os\\nos._exit(9)"}
    """
    )
    assert r.code == 1 and r.status == "FAILED"
    assert r.outcome["error"]["step"] == "start" and r.outcome["error"]["kind"] == "crash"
