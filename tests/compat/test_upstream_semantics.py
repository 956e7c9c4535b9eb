"""Upstream behaviours its fixture playbooks rely on (issue 18), each run as a user would: ``noetl run``.

Every test here fails without its item of the issue: python globals and a top-level ``return``
(item 5), ``libs: {x: {from, import}}`` and ``--catalog`` searching subdirectories (item 9),
postgres ``pool:`` (item 3), undefined names chaining through ``default`` and conditions (item 2).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

HEAD = "apiVersion: noetl.io/v2\nkind: Playbook\n"


def run(tmp_path: Path, text: str, *args: str, name: str = "main.yaml") -> dict[str, Any]:
    path = tmp_path / name
    path.write_text(HEAD + textwrap.dedent(text), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "noetl", "run", str(path), "--json", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.stdout, done.stderr
    outcome: dict[str, Any] = json.loads(done.stdout)
    return outcome


def test_python_globals_and_top_level_return(tmp_path: Path) -> None:
    outcome = run(
        tmp_path,
        """
        metadata: {name: py_globals}
        workload: {greeting: hi}
        workflow:
          - step: start
            tool: {kind: python, code: "result = {'n': 2}"}
            next: [{step: use}]
          - step: use
            tool:
              kind: python
              input: {a: 1}
              code: |
                text = '''line one
                  indented stays'''
                if a == 1:
                    return {
                        "greeting": context["workload"]["greeting"],
                        "start_n": context["start"]["n"],
                        "args": args,
                        "same_id": execution_id == context["execution_id"],
                        "step": step,
                        "text": text,
                    }
                result = "not reached"
            next: [{step: fall}]
          - step: fall
            tool:
              kind: python
              code: |
                if False:
                    return "never"
                result = {"fell_through": True}
        """,
    )
    assert outcome["status"] == "COMPLETED", outcome["error"]
    assert outcome["step_results"]["use"] == {
        "greeting": "hi",
        "start_n": 2,
        "args": {"a": 1},
        "same_id": True,
        "step": "use",
        "text": "line one\n  indented stays",
    }
    assert outcome["step_results"]["fall"] == {"fell_through": True}


def test_error_line_of_wrapped_code_is_the_line_written(tmp_path: Path) -> None:
    outcome = run(
        tmp_path,
        """
        metadata: {name: py_line}
        workflow:
          - step: start
            tool:
              kind: python
              code: |
                x = 1
                if x:
                    raise ValueError("boom")
                return x
        """,
    )
    assert outcome["status"] == "FAILED"
    assert "boom" in outcome["error"]["message"] and "line 3" in outcome["error"]["message"]


def test_python_libs_from_import(tmp_path: Path) -> None:
    outcome = run(
        tmp_path,
        """
        metadata: {name: py_libs}
        workflow:
          - step: start
            tool:
              kind: python
              libs: {dumps: {from: json, import: dumps}, pathlib: pathlib}
              code: "result = [dumps([1]), pathlib.PurePosixPath('a/b').name]"
        """,
    )
    assert outcome["status"] == "COMPLETED", outcome["error"]
    assert outcome["step_results"]["start"] == ["[1]", "b"]


def test_undefined_names_chain_in_inputs_and_rendering_one_is_still_an_error(tmp_path: Path) -> None:
    text = """
        metadata: {name: chains}
        workflow:
          - step: start
            tool:
              kind: python
              input:
                message_id: "{{ workload.message.id | default('') }}"
                pick: "{{ maybe_step.category if maybe_step else 'low' }}"
                known: "{{ workload.message is defined }}"
              code: "result = [message_id, pick, known]"
            next: [{step: strict}]
          - step: strict
            tool: {kind: python, input: {v: "{{ workload.message.id }}"}, code: "result = v"}
        """
    outcome = run(tmp_path, text)
    assert outcome["step_results"]["start"] == ["", "low", False]
    assert outcome["status"] == "FAILED"
    assert "undefined variable 'workload.message'" in outcome["error"]["message"]


def test_postgres_pool_is_accepted_and_checked(tmp_path: Path, pg_database: str) -> None:
    credentials = tmp_path / "creds.json"
    credentials.write_text(json.dumps({"pg": {"type": "postgres", "data": {"dsn": pg_database}}}))
    outcome = run(
        tmp_path,
        """
        metadata: {name: pooled}
        workflow:
          - step: start
            loop: {in: "{{ [1, 2, 3, 4] }}", iterator: n, spec: {mode: parallel}}
            tool:
              kind: postgres
              auth: pg
              pool: {name: shared, min_size: 1, max_size: 2, timeout: 30, max_waiting: 10}
              query: "SELECT {{ n }} AS n"
        """,
        "--credentials",
        str(credentials),
    )
    assert outcome["status"] == "COMPLETED", outcome["error"]
    assert [r["rows"][0]["n"] for r in outcome["step_results"]["start"]["results"]] == [1, 2, 3, 4]
    bad = run(
        tmp_path,
        """
        metadata: {name: pooled_bad}
        workflow:
          - step: start
            tool: {kind: postgres, auth: pg, pool: {max_sise: 2}, query: "SELECT 1"}
        """,
        "--credentials",
        str(credentials),
        name="bad.yaml",
    )
    assert bad["status"] == "FAILED"
    assert "unknown key 'max_sise' in field 'pool'" in bad["error"]["message"]


@pytest.mark.parametrize("nested", ["lib/deeper", "."])
def test_catalog_directory_is_searched_with_subdirectories(tmp_path: Path, nested: str) -> None:
    child_dir = tmp_path / "catalog" / nested
    child_dir.mkdir(parents=True, exist_ok=True)
    (child_dir / "child.yaml").write_text(
        HEAD
        + "metadata: {name: child, path: team/child}\n"
        + "workflow:\n  - step: start\n    tool: {kind: python, code: \"result = 'from child'\"}\n"
    )
    main_dir = tmp_path / "main"
    main_dir.mkdir()
    outcome = run(
        main_dir,
        """
        metadata: {name: parent}
        workflow:
          - step: start
            tool: {kind: playbook, path: team/child}
        """,
        "--catalog",
        str(tmp_path / "catalog"),
    )
    assert outcome["status"] == "COMPLETED", outcome["error"]
    assert outcome["step_results"]["start"] == "from child"


LENIENT = """
    metadata: {name: lenient}
    workflow:
      - step: start
        loop: {in: "{{ [1, 2] }}", iterator: num}
        tool:
          kind: python
          input: {num: "{{ num }}", loop_index: "{{ loop_index }}", label: "n={{ missing.field }}"}
          code: "result = [num, loop_index, label]"
    """


@pytest.mark.parametrize("how", ["playbook", "flag", "env"])
def test_lenient_mode_renders_undefined_empty_and_records_a_warning(tmp_path: Path, how: str) -> None:
    text, args, env = LENIENT, ["--events", str(tmp_path / "events.jsonl")], None
    if how == "playbook":
        text = LENIENT + "executor: {spec: {undefined: lenient}}\n"
    elif how == "flag":
        args.append("--undefined=lenient")
    else:
        env = {**__import__("os").environ, "NOETL_TEMPLATE_UNDEFINED": "lenient"}
    path = tmp_path / "main.yaml"
    path.write_text(HEAD + textwrap.dedent(text), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "noetl", "run", str(path), "--json", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    outcome = json.loads(done.stdout)
    assert outcome["status"] == "COMPLETED", outcome["error"]
    assert outcome["step_results"]["start"]["results"] == [[1, None, "n="], [2, None, "n="]]
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    warned = {e["data"]["variable"] for e in events if e["event_type"] == "template.warning"}
    assert warned == {"loop_index", "missing"}


def test_strict_is_the_default_and_a_playbook_can_insist_on_it(tmp_path: Path) -> None:
    outcome = run(tmp_path, LENIENT)
    assert outcome["status"] == "FAILED" and "undefined variable 'loop_index'" in outcome["error"]["message"]
    strict = run(
        tmp_path, LENIENT + "executor: {spec: {undefined: strict}}\n", "--undefined", "lenient", name="s.yaml"
    )
    assert strict["status"] == "FAILED"


def test_python_assert_noop_result_and_input_data_key(tmp_path: Path) -> None:
    outcome = run(
        tmp_path,
        """
        metadata: {name: small_items}
        workflow:
          - step: start
            tool: {kind: noop, result: {marker: "ran {{ 1 + 1 }}"}}
            next: [{step: scored}]
          - step: scored
            tool:
              kind: python
              input: {years: 4, input_data: [1, 2]}
              assert: {expects: [years], returns: [score]}
              code: "result = {'score': years * 2, 'seen': input_data}"
            next: [{step: broken}]
          - step: broken
            tool:
              kind: python
              input: {years: 4}
              assert: {expects: [years], returns: [score, weight]}
              code: "result = {'score': 1}"
        """,
    )
    assert outcome["step_results"]["start"] == {"marker": "ran 2"}
    assert outcome["step_results"]["scored"] == {"score": 8, "seen": [1, 2]}
    assert outcome["status"] == "FAILED"
    assert "assertion failed: result lacks 'weight' (assert.returns)" in outcome["error"]["message"]
    missing = run(
        tmp_path,
        """
        metadata: {name: expects}
        workflow:
          - step: start
            tool: {kind: python, input: {years: null}, assert: {expects: [years]}, code: "result = 1"}
        """,
        name="expects.yaml",
    )
    assert "input 'years' missing (assert.expects)" in missing["error"]["message"]


def test_script_sources_inline_and_file_confined_to_the_file_roots(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "hello.py").write_text("return {'hello': name}\n")
    (scripts / "count.sql").write_text("SELECT 21 * 2 AS answer")
    (tmp_path / "outside.py").write_text("result = 'must not run'\n")
    text = """
        metadata: {name: scripts}
        workload: {code: "result = {'inline': True}"}
        workflow:
          - step: start
            tool: {kind: python, script: {uri: inline, source: {type: inline, code: "{{ workload.code }}"}}}
            next: [{step: from_file}]
          - step: from_file
            tool: {kind: python, input: {name: x}, script: {uri: ./scripts/hello.py, source: {type: file}}}
            next: [{step: sql}]
          - step: sql
            tool: {kind: duckdb, script: {uri: scripts/count.sql, source: {type: file}}}
            next: [{step: outside}]
          - step: outside
            tool: {kind: python, script: {uri: "{{ workload.outside }}", source: {type: file}}}
        """
    outcome = run(tmp_path, text, "--file-root", str(scripts.parent), "--set", f"outside={tmp_path}/../x.py")
    results = outcome["step_results"]
    assert results["start"] == {"inline": True} and results["from_file"] == {"hello": "x"}
    assert results["sql"]["rows"] == [{"answer": 42}]
    assert (
        outcome["status"] == "FAILED" and "must not be empty or contain '..'" in outcome["error"]["message"]
    )
    absolute = """
        metadata: {name: outside}
        workflow:
          - step: start
            tool: {kind: python, script: {uri: "{{ workload.path }}", source: {type: file}}}
        """
    elsewhere = run(
        tmp_path, absolute, "--file-root", str(scripts), "--set", f"path={tmp_path}/outside.py", name="o.yaml"
    )
    assert elsewhere["status"] == "FAILED" and "is outside the file roots" in elsewhere["error"]["message"]


def test_script_from_s3_says_what_to_do_instead(tmp_path: Path) -> None:
    outcome = run(
        tmp_path,
        """
        metadata: {name: s3_script}
        workflow:
          - step: start
            tool: {kind: python, script: {uri: "s3://bucket/x.py", source: {type: s3}}}
        """,
    )
    assert outcome["status"] == "FAILED"
    assert "copy the object into a file root with the s3 tool" in outcome["error"]["message"]
