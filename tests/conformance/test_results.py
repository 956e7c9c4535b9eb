"""DECISIONS 7-11: results, templates, tool result shapes, SQL bind parameters."""

from __future__ import annotations

import json

HEAD = """
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: results}
"""


def test_step_result_aliases(noetl_run):
    r = noetl_run(
        HEAD
        + """
    workflow:
      - step: start
        tool: {kind: python, code: "result = {'field': 41}"}
        next: {arcs: [{step: use}]}
      - step: use
        tool:
          kind: python
          input: {a: "{{ start.field }}", b: "{{ start.data.field }}", c: "{{ start.result.field }}", whole: "{{ start }}"}
          code: "result = [a, b, c, whole]"
    """
    )
    assert r.results["use"] == [41, 41, 41, {"field": 41}]


def test_single_expression_keeps_native_type_and_mixed_text_is_string(noetl_run):
    r = noetl_run(
        HEAD
        + """
    workload: {items: [1, 2, 3], cfg: {a: 1}, n: 5, flag: false, zip: "007"}
    workflow:
      - step: start
        tool:
          kind: python
          input: {items: "{{ items }}", cfg: "{{ cfg }}", n: "{{ n }}", flag: "{{ flag }}", text: "n={{ n }}", zip: "{{ zip }}"}
          code: "result = [type(items).__name__, type(cfg).__name__, type(n).__name__, type(flag).__name__, text, zip]"
    """
    )
    assert r.results["start"] == ["list", "dict", "int", "bool", "n=5", "007"]


def test_undefined_variable_in_tool_input_is_step_error_naming_it(noetl_run):
    r = noetl_run(
        HEAD
        + """
    workflow:
      - step: start
        tool: {kind: python, input: {x: "{{ missing_thing }}"}, code: "result = x"}
    """
    )
    assert r.status == "FAILED" and r.code == 1
    assert r.outcome["error"]["step"] == "start"
    assert "missing_thing" in r.outcome["error"]["message"]
    assert "Traceback" not in r.stderr


def test_undefined_variable_in_sql_and_url(noetl_run):
    r = noetl_run(
        HEAD
        + """
    workflow:
      - step: start
        tool: {kind: duckdb, command: "select {{ nope }} as x"}
    """
    )
    assert r.status == "FAILED" and "nope" in r.outcome["error"]["message"]
    r = noetl_run(
        HEAD
        + """
    workflow:
      - step: start
        tool: {kind: http, url: "http://127.0.0.1:1/{{ nope_url }}"}
    """
    )
    assert r.status == "FAILED" and "nope_url" in r.outcome["error"]["message"]


def test_truthiness_of_rendered_strings(noetl_run):
    values = ["", "false", "0", "no", "none", "null", "False", "NULL", "yes", "1", "x"]
    wl = "{" + ", ".join(f"v{i}: '{v}'" for i, v in enumerate(values)) + "}"
    arcs = "\n".join(f'            - {{step: s{i}, when: "{{{{ v{i} }}}}"}}' for i in range(len(values)))
    steps = "\n".join(f"      - {{step: s{i}, tool: {{kind: noop}}}}" for i in range(len(values)))
    r = noetl_run(
        HEAD
        + f"""
    workload: {wl}
    workflow:
      - step: start
        tool: {{kind: noop}}
        next:
          spec: {{mode: inclusive}}
          arcs:
{arcs}
{steps}
    """
    )
    assert r.status == "COMPLETED", r.stderr
    assert sorted(r.outcome["executed_steps"][1:]) == ["s10", "s8", "s9"]


def test_python_main_legacy_and_noop_result(noetl_run):
    r = noetl_run(
        HEAD
        + """
    workflow:
      - step: start
        tool:
          kind: python
          input: {a: 2, b: 3}
          code: |
            def main(a, b):
                return {"sum": a + b}
        next: {arcs: [{step: nothing}]}
      - step: nothing
        tool: {kind: noop}
    """
    )
    assert r.results == {"start": {"sum": 5}, "nothing": {}}


def test_shell_results(noetl_run):
    r = noetl_run(
        HEAD
        + """
    workflow:
      - step: start
        tool: {kind: shell, command: "echo hi; echo err 1>&2"}
        next: {arcs: [{step: many}]}
      - step: many
        tool: {kind: shell, cmds: ["echo one", "echo two"]}
    """
    )
    assert r.results["start"] == {"stdout": "hi\n", "stderr": "err\n", "exit_code": 0}
    assert r.results["many"]["stdout"] == "one\ntwo\n" and r.results["many"]["exit_code"] == 0


def test_http_result_shape_and_body_paths(noetl_run, http_server):
    url = http_server.route("/orders", body={"items": [1, 2], "has_more": False})
    r = noetl_run(
        HEAD
        + f"""
    workflow:
      - step: fetch
        tool: {{kind: http, method: GET, url: "{url}"}}
        next: {{arcs: [{{step: count}}]}}
      - step: count
        tool: {{kind: python, input: {{items: "{{{{ fetch.data['items'] }}}}", code: "{{{{ fetch.status_code }}}}"}}, code: "result = [len(items), code]"}}
    """
    )
    assert r.status == "COMPLETED", r.stderr
    fetch = r.results["fetch"]
    assert set(fetch) == {"status_code", "headers", "data", "body"}  # DECISIONS 8 (amended): body too
    assert fetch["status_code"] == 200 and fetch["data"] == {"items": [1, 2], "has_more": False}
    assert isinstance(fetch["body"], str) and json.loads(fetch["body"]) == fetch["data"]  # the raw text
    assert r.results["count"] == [2, 200]


def test_http_non_2xx_is_error_unless_accepted(noetl_run, http_server):
    url = http_server.route("/missing", status=404, body={"e": 1})
    r = noetl_run(
        HEAD
        + f"""
    workflow:
      - step: start
        tool: {{kind: http, url: "{url}"}}
    """
    )
    assert (
        r.status == "FAILED"
        and r.outcome["error"]["kind"] == "http"
        and "404" in r.outcome["error"]["message"]
    )
    r = noetl_run(
        HEAD
        + f"""
    workflow:
      - step: start
        tool: {{kind: http, url: "{url}", spec: {{accept_status: [404]}}}}
    """
    )
    assert r.status == "COMPLETED" and r.results["start"]["status_code"] == 404


def test_pipeline_result_is_map_by_task_name(noetl_run):
    r = noetl_run(
        HEAD
        + """
    workflow:
      - step: start
        tool:
          - name: one
            kind: python
            code: "result = {'v': 1}"
          - kind: python
            input: {prev: "{{ one.v }}"}
            code: "result = prev + 1"
    """
    )
    # DECISIONS 8 (amended): each map result's fields are merged in as well
    assert r.results["start"] == {"one": {"v": 1}, "task_1": 2, "v": 1}


def test_pipeline_result_merges_task_fields_last_task_wins(noetl_run):
    r = noetl_run(
        HEAD
        + """
    workflow:
      - step: start
        tool:
          - name: fetch
            kind: python
            code: "result = {'status': 'fetched', 'rows': [1, 2], 'collect': 'not a task name'}"
          - name: collect
            kind: python
            code: "result = {'status': 'collected', 'count': 2}"
        next: [{step: check}]
      - step: check
        tool:
          kind: python
          input: {status: "{{ start.status }}", rows: "{{ start.rows }}", n: "{{ start.collect.count }}"}
          code: "result = [status, rows, n]"
    """
    )
    assert r.status == "COMPLETED", r.stderr
    assert r.results["start"] == {
        "fetch": {"status": "fetched", "rows": [1, 2], "collect": "not a task name"},
        "collect": {"status": "collected", "count": 2},
        "status": "collected",
        "rows": [1, 2],
        "count": 2,
    }
    assert r.results["check"] == ["collected", [1, 2], 2]


def test_pipeline_task_set_reads_its_result_as_output(noetl_run):
    r = noetl_run(
        HEAD
        + """
    workflow:
      - step: start
        tool:
          - name: fetch
            kind: python
            code: "result = {'items': [1, 2, 3], 'status': 'mine'}"
            set: {ctx.n: "{{ output.items | length }}", ctx.s: "{{ output.status }}", ctx.d: "{{ output.data.items }}"}
            spec:
              policy:
                rules:
                  - when: "{{ output.status == 'ok' }}"
                    then: {do: continue, set: {ctx.policy_saw: "{{ output.status }}"}}
          - name: done
            kind: noop
    """
    )
    assert r.status == "COMPLETED", r.stderr
    variables = r.outcome["variables"]
    assert (variables["n"], variables["s"], variables["d"]) == (3, "mine", [1, 2, 3])
    assert variables["policy_saw"] == "ok"


def test_duckdb_query_statement_and_last_statement(noetl_run, tmp_path):
    db = tmp_path / "x.duckdb"
    r = noetl_run(
        HEAD
        + f"""
    workflow:
      - step: start
        tool: {{kind: duckdb, db_path: "{db}", command: "create table t(a int, b text); insert into t values (1, 'x'), (2, 'y'); select * from t order by a"}}
        next: {{arcs: [{{step: stmt}}]}}
      - step: stmt
        tool: {{kind: duckdb, db_path: "{db}", command: "delete from t where a = 1"}}
    """
    )
    assert r.status == "COMPLETED", r.stderr
    assert r.results["start"] == {
        "columns": ["a", "b"],
        "rows": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}],
        "row_count": 2,
    }
    assert set(r.results["stmt"]) == {"row_count"}


def _pg_creds(url: str) -> str:
    return f"pg_test:\n  type: postgres\n  data:\n    dsn: '{url}'\n"


def test_postgres_results_and_bind_params(noetl_run, pg_database):
    r = noetl_run(
        HEAD
        + """
    workload: {name: "O'Brien; drop table people"}
    workflow:
      - step: start
        tool:
          kind: postgres
          auth: pg_test
          command: "drop table if exists people; create table people(id serial primary key, name text); insert into people(name) values (%s)"
          params: ["{{ name }}"]
        next: {arcs: [{step: read}]}
      - step: read
        tool: {kind: postgres, auth: "{{ 'pg_' ~ 'test' }}", command: "select id, name from people"}
    """,
        "--credentials",
        "creds.yaml",
        files={"creds.yaml": _pg_creds(pg_database)},
    )
    assert r.status == "COMPLETED", r.stderr
    assert r.results["start"] == {"row_count": 1}
    assert r.results["read"] == {
        "columns": ["id", "name"],
        "rows": [{"id": 1, "name": "O'Brien; drop table people"}],
        "row_count": 1,
    }


def test_lenient_playbook_renders_undefined_empty_with_a_warning(noetl_run):
    """DECISIONS 10 (amended): executor.spec.undefined: lenient, on both runtimes."""
    r = noetl_run(
        HEAD
        + """
    executor: {spec: {undefined: lenient}}
    workflow:
      - step: start
        tool:
          kind: python
          input: {v: "{{ no_such.field }}", t: "x={{ nothing_here }}"}
          code: "result = [v, t]"
    """
    )
    assert r.status == "COMPLETED", r.stderr
    assert r.results["start"] == [None, "x="]
    warned = sorted(e["data"]["variable"] for e in r.of("template.warning"))
    assert warned == ["no_such", "nothing_here"]
