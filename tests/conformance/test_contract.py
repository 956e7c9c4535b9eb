"""DECISIONS 1, 2, 23, 25: the command line contract of ``noetl run`` and validation errors."""

from __future__ import annotations

import json
import re

HELLO = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: hello, path: tests/hello}
workload: {region: us, count: 1, nested: {a: 1}}
workflow:
  - step: start
    tool: {kind: python, input: {r: "{{ region }}", c: "{{ count }}"}, code: "result = {'r': r, 'c': c}"}
    next: {arcs: [{step: end}]}
  - step: end
    tool: {kind: noop}
"""

KEYS = {
    "execution_id",
    "status",
    "playbook_path",
    "started_at",
    "completed_at",
    "duration_seconds",
    "executed_steps",
    "step_results",
    "final_result",
    "variables",
    "error",
}


def test_json_outcome_has_exactly_the_contract_keys(noetl_run):
    r = noetl_run(HELLO)
    assert r.code == 0, r.stderr
    assert set(r.outcome) == KEYS
    assert r.outcome["status"] == "COMPLETED"
    assert r.outcome["playbook_path"] == "tests/hello"
    assert r.outcome["executed_steps"] == ["start", "end"]
    assert r.outcome["step_results"]["start"] == {"r": "us", "c": 1}
    assert r.outcome["final_result"] == {}
    assert r.outcome["error"] is None
    assert r.outcome["variables"]["region"] == "us"
    assert re.fullmatch(r"\d+", r.outcome["execution_id"])
    assert r.outcome["duration_seconds"] >= 0
    assert r.outcome["started_at"].endswith("Z") and r.outcome["completed_at"].endswith("Z")
    # stdout holds exactly one JSON object
    assert len(r.stdout.strip().splitlines()) == 1


def test_set_values_are_yaml_scalars_or_json_and_replace_top_level_keys(noetl_run):
    r = noetl_run(
        HELLO,
        "--set",
        "region=eu",
        "--set",
        "count=3",
        "--set",
        'nested={"b": 2}',
        "--set",
        "flag=true",
        "--set",
        "nothing=null",
        "--set",
        "text=2024-01-01",
    )
    assert r.code == 0, r.stderr
    v = r.outcome["variables"]
    assert v["region"] == "eu" and v["count"] == 3 and v["flag"] is True and v["nothing"] is None
    assert v["nested"] == {"b": 2}  # replaced, not merged (top-level replace)
    assert v["text"] == "2024-01-01"
    assert r.outcome["step_results"]["start"] == {"r": "eu", "c": 3}


def test_payload_json_then_set_overrides(noetl_run):
    r = noetl_run(HELLO, "--payload", '{"region": "apac", "count": 7}', "--set", "count=8")
    assert r.outcome["variables"]["region"] == "apac"
    assert r.outcome["variables"]["count"] == 8


def test_bad_payload_is_usage_error_exit_2(noetl_run):
    r = noetl_run(HELLO, "--payload", "{not json")
    assert r.code == 2
    assert "--payload" in r.stderr and "Traceback" not in r.stderr
    r = noetl_run(HELLO, "--set", "novalue")
    assert r.code == 2 and "KEY=VALUE" in r.stderr


def test_events_file_is_json_lines_of_the_execution(noetl_run):
    r = noetl_run(HELLO)
    names = r.names()
    assert names[0] == "playbook.initialized"
    assert names[-1] == "playbook.completed"
    assert "command.issued" in names and "call.done" in names and "command.completed" in names
    ids = [e["event_id"] for e in r.events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    first_issue = r.of("command.issued")[0]
    assert first_issue["step"] == "start"
    for e in r.events:
        assert e["execution_id"] == r.outcome["execution_id"]


def test_failed_execution_exit_1_with_error_object(noetl_run):
    r = noetl_run("""
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: boom}
    workflow:
      - step: start
        tool: {kind: python, code: "raise ValueError('bad input 42')"}
    """)
    assert r.code == 1
    assert r.outcome["status"] == "FAILED"
    err = r.outcome["error"]
    assert err["step"] == "start" and err["kind"] == "python" and "bad input 42" in err["message"]
    assert r.names()[-1] == "playbook.failed"


def test_human_output_lists_steps_and_result(noetl_run):
    r = noetl_run(HELLO, json_out=False)
    assert r.code == 0, r.stderr
    assert "start" in r.stderr and "COMPLETED" in r.stderr and "ms" in r.stderr
    assert "result:" in r.stdout


def test_api_version_v10_is_an_alias(noetl_run):
    r = noetl_run(HELLO.replace("noetl.io/v2", "noetl.io/v10"))
    assert r.code == 0, r.stderr


def test_legacy_syntax_is_rewritten_with_warning_and_rejected_with_strict(noetl_run):
    legacy = """
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: legacy}
    workflow:
      - step: start
        tool: {kind: python, args: {x: 2}, code: "result = {'y': x * 2}"}
        next: end
      - step: end
        tool: {kind: noop}
    """
    r = noetl_run(legacy)
    assert r.code == 0, r.stderr
    assert r.results["start"] == {"y": 4}
    r = noetl_run(legacy, "--strict")
    assert r.code == 2
    assert "args" in r.stderr or "next" in r.stderr


def _invalid(noetl_run, text):
    r = noetl_run(text)
    assert r.code == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert r.outcome is None
    return r.stderr


def test_unknown_root_key_is_quoted_with_line_and_allowed(noetl_run):
    err = _invalid(
        noetl_run,
        """
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: x}
    wrkflow: []
    workflow:
      - step: start
        tool: {kind: noop}
    """,
    )
    assert "wrkflow" in err and "playbook.yaml:5" in err and "workflow" in err


def test_unknown_step_key_names_step_and_line(noetl_run):
    err = _invalid(
        noetl_run,
        """
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: x}
    workflow:
      - step: start
        tool: {kind: noop}
        nxt: {arcs: [{step: end}]}
    """,
    )
    assert "nxt" in err and "start" in err and ":8" in err


def test_unknown_tool_kind_lists_allowed_kinds(noetl_run):
    err = _invalid(
        noetl_run,
        """
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: x}
    workflow:
      - step: start
        tool: {kind: htp, url: "http://x"}
    """,
    )
    assert "htp" in err and "start" in err and "http" in err and "python" in err and ":7" in err


def test_arc_to_missing_step_is_rejected(noetl_run):
    err = _invalid(
        noetl_run,
        """
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: x}
    workflow:
      - step: start
        tool: {kind: noop}
        next: {arcs: [{step: nowhere}]}
    """,
    )
    assert "nowhere" in err and "start" in err


def test_malformed_yaml_names_line(noetl_run):
    err = _invalid(noetl_run, "apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: x\nworkflow: []\n")
    assert "playbook.yaml:" in err


def test_wrong_type_names_field(noetl_run):
    err = _invalid(
        noetl_run,
        """
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: x}
    workflow: 5
    """,
    )
    assert "workflow" in err


def test_unknown_tool_field_is_rejected_at_load(noetl_run):
    err = _invalid(
        noetl_run,
        """
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: x}
    workflow:
      - step: start
        tool: {kind: http, urll: "http://127.0.0.1:1/"}
    """,
    )
    assert "urll" in err and "start" in err


def test_missing_playbook_file_is_usage_error(noetl_run, tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "noetl", "run", str(tmp_path / "nope.yaml"), "--json"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "nope.yaml" in proc.stderr and "Traceback" not in proc.stderr


def test_validate_command_exit_codes(tmp_path):
    import subprocess
    import sys
    import textwrap

    good = tmp_path / "good.yaml"
    good.write_text(textwrap.dedent(HELLO))
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: b}\nworkflow:\n  - step: s\n    tool: {kind: nope}\n"
    )
    ok = subprocess.run(
        [sys.executable, "-m", "noetl", "validate", str(good)], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    both = subprocess.run(
        [sys.executable, "-m", "noetl", "validate", str(good), str(bad), "--json"],
        capture_output=True,
        text=True,
    )
    assert both.returncode == 2
    lines = [json.loads(x) for x in both.stdout.splitlines()]
    assert [x["valid"] for x in lines] == [True, False]
    assert "nope" in lines[1]["error"]["message"]


def test_schema_command_prints_json_schema():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "noetl", "schema"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    schema = json.loads(out.stdout)
    assert "workflow" in json.dumps(schema)
