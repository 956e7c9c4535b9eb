"""Parser: canonical playbooks -> model, and every validation error with file, line, step and field."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from noetl import dsl
from noetl.dsl import parser
from noetl.dsl.model import TOOL_KINDS, AdmitRule, Arc, Loop, Playbook, Rule, Task
from noetl.errors import PlaybookError, UsageError

HEAD = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: t}
"""
"""Three lines: a body appended after it starts at line 4."""


def parse(text: str, **kw: bool) -> Playbook:
    return parser.parse(textwrap.dedent(text), source="pb.yaml", **kw)


def with_head(body: str) -> str:
    return HEAD + textwrap.dedent(body)


def error(text: str, **kw: bool) -> PlaybookError:
    with pytest.raises(PlaybookError) as caught:
        parse(text, **kw)
    return caught.value


def steps_error(body: str) -> PlaybookError:
    return error(with_head(body))


def test_minimal_playbook_and_defaults() -> None:
    pb = parse(with_head("workflow:\n  - step: only\n    tool: {kind: noop}\n"))
    assert pb.name == "t" and pb.path == "t"
    assert pb.api_version == "noetl.io/v2"
    assert pb.source_file == "pb.yaml"
    assert pb.warnings == ()
    assert pb.entry_step == "only"
    step = pb.steps["only"]
    assert step.tool == (Task(kind="noop", name="only", location=step.tool[0].location),)
    assert step.pipeline is False and step.next is None and step.loop is None
    assert step.location is not None and step.location.line == 5
    assert step.failure_mode == "fail_fast" and step.priority == 0 and step.timeout is None


def test_package_reexports_parse_and_load() -> None:
    assert dsl.parse is parser.parse and dsl.load is parser.load


# --------------------------------------------------------------------------- the reference examples

REFERENCE_SECTION_3 = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata:
  name: invoice_sync            # required
  path: finance/invoice_sync    # catalog key; defaults to name when absent
  version: "3.1"                # informational only; catalog versions are server-assigned integers
  description: Pull invoices and load them
  labels: {team: finance}
executor:                        # optional
  profile: distributed           # local | distributed | auto (default auto)
  version: noetl-runtime/1
  requires: {tools: [http, postgres], features: [templating]}
  spec: {entry_step: start}
keychain:                        # optional credential declarations
  - {name: erp_token, kind: oauth2, scope: global, auto_renew: true,
     endpoint: "https://erp.example/oauth/token", method: POST,
     data: {grant_type: client_credentials}}
workload:                        # defaults, overridden by the execute request payload
  since: "2026-01-01"
  pg_auth: pg_finance
workbook:                        # optional reusable tasks
  - name: normalise
    tool: {kind: python, input: {rows: null}, code: "result = {'n': len(rows)}"}
workflow:                        # required, non-empty list of steps
  - step: start
    tool: {kind: noop}
    next: {arcs: [{step: end}]}
  - step: end
    tool: {kind: noop}
"""

APPENDIX_B = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: order_backfill, path: demo/order_backfill}
executor: {profile: distributed, spec: {entry_step: start}}
keychain:
  - {name: shop, kind: credential, scope: global, credential: shop_api}
workload: {api: "https://shop.example/api", pg_auth: pg_demo, regions: [eu, us]}
workflow:
  - step: start
    tool: {kind: noop}
    set: {ctx.loaded: 0}
    next: {arcs: [{step: per_region}]}
  - step: per_region
    loop: {in: "{{ regions }}", iterator: region, spec: {mode: parallel, max_in_flight: 2}}
    tool:
      - name: page_init
        kind: noop
        set: {iter.page: 1}
      - name: fetch
        kind: http
        url: "{{ api }}/orders"
        headers: {Authorization: "Bearer {{ keychain.shop.token }}"}
        params: {region: "{{ iter.region }}", page: "{{ iter.page }}"}
        spec:
          policy:
            rules:
              - when: "{{ output.status == 'error' and output.http.status in [429, 503] }}"
                then: {do: retry, attempts: 5, backoff: exponential, delay: 1}
              - when: "{{ output.status == 'error' }}"
                then: {do: fail}
      - name: store
        kind: postgres
        auth: "{{ pg_auth }}"
        command: "insert into orders_raw select * from json_populate_recordset(null::orders_raw, '{{ fetch.data.items | tojson }}')"
        spec:
          policy:
            rules:
              - when: "{{ fetch.data.has_more }}"
                then: {do: jump, to: fetch, set: {iter.page: "{{ iter.page + 1 }}"}}
              - else: {then: {do: break}}
    next: {arcs: [{step: summarize, when: "{{ event.name == 'loop.done' }}"}]}
  - step: summarize
    tool: {kind: postgres, auth: "{{ pg_auth }}", command: "select count(*) as n from orders_raw"}
    set: {ctx.loaded: "{{ output.data.rows[0].n }}"}
    next:
      spec: {mode: exclusive}
      arcs:
        - {step: notify, when: "{{ loaded | int > 0 }}"}
        - {step: end}
  - step: notify
    tool: {kind: playbook, path: demo/notify, input: {count: "{{ loaded }}"}, return_step: end}
    next: {arcs: [{step: end}]}
  - step: end
    tool: {kind: python, input: {n: "{{ loaded }}"}, code: "result = {'loaded': n}"}
"""


def test_reference_section_3_example() -> None:
    pb = parser.parse(REFERENCE_SECTION_3)
    assert pb.warnings == ()
    assert (pb.name, pb.path, pb.version, pb.description) == (
        "invoice_sync",
        "finance/invoice_sync",
        "3.1",
        "Pull invoices and load them",
    )
    assert pb.metadata["labels"] == {"team": "finance"}
    assert pb.executor.profile == "distributed" and pb.entry_step == "start"
    assert pb.keychain[0]["name"] == "erp_token" and pb.keychain[0]["data"] == {
        "grant_type": "client_credentials"
    }
    assert pb.workload == {"since": "2026-01-01", "pg_auth": "pg_finance"}
    normalise = pb.workbook["normalise"]
    assert (normalise.kind, normalise.name, dict(normalise.input)) == ("python", "normalise", {"rows": None})
    assert normalise.config == {"code": "result = {'n': len(rows)}"}
    assert [s.name for s in pb.workflow] == ["start", "end"]
    assert pb.steps["start"].next is not None
    assert [a.step for a in pb.steps["start"].next.arcs] == ["end"]


def test_appendix_b_example() -> None:
    pb = parser.parse(APPENDIX_B, source="b.yaml")
    assert pb.warnings == ()
    region = pb.steps["per_region"]
    assert region.loop == Loop(in_="{{ regions }}", iterator="region", mode="parallel", max_in_flight=2)
    assert region.pipeline is True
    assert [t.name for t in region.tool] == ["page_init", "fetch", "store"]
    page_init, fetch, store = region.tool
    assert page_init.set == {"iter.page": 1}
    assert fetch.config == {
        "url": "{{ api }}/orders",
        "headers": {"Authorization": "Bearer {{ keychain.shop.token }}"},
        "params": {"region": "{{ iter.region }}", "page": "{{ iter.page }}"},
    }
    assert fetch.rules[0] == Rule(
        when="{{ output.status == 'error' and output.http.status in [429, 503] }}",
        do="retry",
        attempts=5,
        backoff="exponential",
        delay=1.0,
    )
    assert fetch.rules[1].do == "fail"
    assert store.auth == "{{ pg_auth }}"
    assert store.rules == (
        Rule(
            when="{{ fetch.data.has_more }}", do="jump", to="fetch", set={"iter.page": "{{ iter.page + 1 }}"}
        ),
        Rule(when=None, do="break"),
    )
    summarize = pb.steps["summarize"]
    assert summarize.set == {"ctx.loaded": "{{ output.data.rows[0].n }}"}
    assert summarize.next is not None and summarize.next.mode == "exclusive"
    assert [(a.step, a.when) for a in summarize.next.arcs] == [
        ("notify", "{{ loaded | int > 0 }}"),
        ("end", None),
    ]
    notify = pb.steps["notify"].tool[0]
    assert notify.kind == "playbook"
    assert notify.config == {"path": "demo/notify", "return_step": "end"}
    assert notify.input == {"count": "{{ loaded }}"}
    assert pb.steps["end"].tool[0].kind == "python"
    arc = pb.steps["start"].next.arcs[0]  # type: ignore[union-attr]
    assert arc.location is not None and (arc.location.file, arc.location.line) == ("b.yaml", 12)


# --------------------------------------------------------------------------- root


def test_api_version_v10_is_an_alias_without_warning() -> None:
    pb = parse(with_head("workflow: [{step: a, tool: {kind: noop}}]").replace("v2", "v10"))
    assert pb.api_version == "noetl.io/v2" and pb.warnings == ()


def test_unknown_api_version_lists_allowed() -> None:
    err = error(with_head("workflow: [{step: a, tool: {kind: noop}}]").replace("noetl.io/v2", "noetl.io/v3"))
    assert "noetl.io/v3" in err.message and "noetl.io/v2" in err.message and "noetl.io/v10" in err.message
    assert err.location is not None and err.location.line == 1


def test_missing_api_version_and_kind() -> None:
    err = error("kind: Playbook\nmetadata: {name: t}\nworkflow: [{step: a, tool: {kind: noop}}]\n")
    assert "needs 'apiVersion'" in err.message
    err = error("apiVersion: noetl.io/v2\nmetadata: {name: t}\nworkflow: [{step: a, tool: {kind: noop}}]\n")
    assert "needs 'kind'" in err.message


def test_other_resource_kinds_are_not_playbooks() -> None:
    err = error(with_head("workflow: [{step: a, tool: {kind: noop}}]").replace("Playbook", "Credential"))
    assert "unknown kind 'Credential'" in err.message and "Playbook" in err.message
    assert err.location is not None and err.location.line == 2


def test_unknown_root_key_quoted_with_line_and_allowed_keys() -> None:
    err = error(with_head("wrkflow: []\nworkflow: [{step: a, tool: {kind: noop}}]\n"))
    assert "'wrkflow'" in err.message
    assert (
        "allowed keys: apiVersion, executor, keychain, kind, metadata, workbook, workflow, workload"
        in err.message
    )
    assert err.location is not None and (err.location.file, err.location.line, err.location.column) == (
        "pb.yaml",
        4,
        1,
    )
    assert str(err).startswith("pb.yaml:4:1:")


def test_metadata_needs_name_and_is_free_form() -> None:
    err = error(
        "apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {path: x}\nworkflow: [{step: a, tool: {kind: noop}}]"
    )
    assert "'metadata' needs 'name'" in err.message and err.location is not None and err.location.line == 3
    pb = parse(
        """\
        apiVersion: noetl.io/v2
        kind: Playbook
        metadata: {name: m, version: 3.1, tags: etl, owner: me, exposed_in_ui: false}
        workflow: [{step: a, tool: {kind: noop}}]
        """
    )
    assert pb.version == "3.1" and pb.path == "m"
    assert pb.metadata == {
        "name": "m",
        "version": "3.1",
        "tags": ["etl"],
        "owner": "me",
        "exposed_in_ui": False,
    }


def test_metadata_known_keys_are_typed() -> None:
    err = error(
        "apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: m, exposed_in_ui: maybe}\n"
        "workflow: [{step: a, tool: {kind: noop}}]"
    )
    assert err.field == "metadata.exposed_in_ui" and "true or false" in err.message


@pytest.mark.parametrize(
    ("body", "field", "expected"),
    [
        ("workflow: 5\n", "workflow", "must be a list, got an integer"),
        ("workflow: []\n", "workflow", "must not be empty"),
        (
            "workload: [1]\nworkflow: [{step: a, tool: {kind: noop}}]\n",
            "workload",
            "must be a map, got a list",
        ),
        ("keychain: {a: 1}\nworkflow: [{step: a, tool: {kind: noop}}]\n", "keychain", "must be a list"),
        (
            "keychain: [{kind: x}]\nworkflow: [{step: a, tool: {kind: noop}}]\n",
            "keychain[0].name",
            "needs 'name'",
        ),
        (
            "workflow: [{step: a, tool: {kind: noop}}]\nexecutor: {profile: cloud}\n",
            "executor.profile",
            "local",
        ),
        ("workflow: [5]\n", "workflow[0]", "must be a map, got an integer"),
        ("workflow: [{step: 5, tool: {kind: noop}}]\n", "workflow[0].step", "must be a string"),
    ],
)
def test_wrong_types_name_the_field_and_expected_type(body: str, field: str, expected: str) -> None:
    err = error(with_head(body))
    assert err.field == field
    assert expected in err.message
    assert err.location is not None and err.location.line is not None and err.location.line >= 4


def test_root_must_be_a_map_and_not_empty() -> None:
    assert "must be a YAML map" in error("- a\n- b\n").message
    assert "empty" in error("").message
    assert "empty" in error("# only a comment\n").message


# --------------------------------------------------------------------------- YAML itself


def test_malformed_yaml_reports_line_and_column() -> None:
    err = error(with_head("workflow:\n  - step: a\n    tool: {kind: noop\n"))
    assert "invalid YAML" in err.message
    assert err.location is not None and err.location.line == 7 and err.location.column == 1


def test_duplicate_keys_are_errors() -> None:
    err = error(with_head("workflow:\n  - step: a\n    tool: {kind: noop}\n    tool: {kind: noop}\n"))
    assert "duplicate key 'tool'" in err.message and "line 6" in err.message
    assert err.location is not None and err.location.line == 7


def test_several_documents_and_unknown_tags_are_errors() -> None:
    assert "single document" in error(HEAD + "---\n" + HEAD).message
    err = error(with_head("workflow: !custom [1]\n"))
    assert "!custom" in err.message and err.location is not None and err.location.line == 4


def test_anchors_aliases_and_merge_keys() -> None:
    pb = parse(
        with_head(
            """\
            workload:
              base: &base {method: GET, headers: {a: "1"}}
            workflow:
              - step: a
                tool: {<<: *base, kind: http, url: "http://x", method: POST}
            """
        )
    )
    task = pb.steps["a"].tool[0]
    assert task.config == {"url": "http://x", "method": "POST", "headers": {"a": "1"}}
    assert pb.workload["base"] == {"method": "GET", "headers": {"a": "1"}}


def test_scalars_keep_yaml_types_and_keys_stay_text() -> None:
    pb = parse(
        with_head(
            """\
            workload: {n: 3, f: 1.5, b: yes, z: null, d: 2026-01-01, on: 1, 200: ok, s: "007"}
            workflow: [{step: a, tool: {kind: noop}}]
            """
        )
    )
    assert pb.workload == {
        "n": 3,
        "f": 1.5,
        "b": True,
        "z": None,
        "d": "2026-01-01",
        "on": 1,
        "200": "ok",
        "s": "007",
    }


def test_recursive_alias_is_an_error() -> None:
    err = error(with_head("workload: &w {self: *w}\nworkflow: [{step: a, tool: {kind: noop}}]\n"))
    assert "recursive" in err.message or "alias" in err.message


# --------------------------------------------------------------------------- steps


def test_unknown_step_key_names_step_line_and_allowed_keys() -> None:
    err = steps_error("workflow:\n  - step: start\n    tool: {kind: noop}\n    nxt: end\n")
    assert err.step == "start" and err.field == "nxt"
    assert "'nxt'" in err.message
    assert "allowed keys: desc, input, loop, next, set, spec, step, tool" in err.message
    assert err.location is not None and err.location.line == 7
    assert "step 'start'" in str(err) and ":7:" in str(err)


def test_tool_field_on_step_gets_a_hint() -> None:
    err = steps_error("workflow:\n  - step: a\n    tool: {kind: python}\n    code: x\n")
    assert "belong inside 'tool:'" in err.message


def test_duplicate_step_names() -> None:
    err = steps_error("workflow:\n  - step: a\n    tool: {kind: noop}\n  - step: a\n    tool: {kind: noop}\n")
    assert "duplicate step name 'a'" in err.message and "line 5" in err.message
    assert err.location is not None and err.location.line == 7 and err.step == "a"


def test_empty_step_name() -> None:
    err = steps_error("workflow:\n  - step: ''\n    tool: {kind: noop}\n")
    assert "must not be empty" in err.message


def test_step_named_end_is_a_normal_step() -> None:
    pb = parse(with_head("workflow:\n  - step: end\n    tool: {kind: python, code: 'result = 1'}\n"))
    assert pb.steps["end"].tool[0].kind == "python" and pb.entry_step == "end"


def test_step_spec_fields() -> None:
    pb = parse(
        with_head(
            """\
            workflow:
              - step: a
                desc: first
                spec:
                  timeout: 2m
                  priority: 5
                  policy:
                    failure: {mode: best_effort}
                    lifecycle: {timeout_s: 10}
                    emit: {events: all}
                    admit:
                      rules:
                        - when: "{{ go }}"
                          then: {allow: true}
                        - else: {then: {allow: false}}
                tool: {kind: noop}
            """
        )
    )
    step = pb.steps["a"]
    assert step.desc == "first" and step.timeout == 120.0 and step.priority == 5
    assert step.failure_mode == "best_effort"
    assert step.admit == (AdmitRule(when="{{ go }}", allow=True), AdmitRule(when=None, allow=False))


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("30", 30.0), ("'30s'", 30.0), ("'2m'", 120.0), ("'500ms'", 0.5), ("'1h'", 3600.0), ("1.5", 1.5)],
)
def test_step_timeout_durations(value: str, seconds: float) -> None:
    pb = parse(
        with_head(f"workflow:\n  - step: a\n    spec: {{timeout: {value}}}\n    tool: {{kind: noop}}\n")
    )
    assert pb.steps["a"].timeout == seconds


@pytest.mark.parametrize("value", ["'soon'", "0", "-3", "'3 weeks'", "true"])
def test_bad_step_timeout(value: str) -> None:
    err = steps_error(f"workflow:\n  - step: a\n    spec: {{timeout: {value}}}\n    tool: {{kind: noop}}\n")
    assert err.field == "spec.timeout" and err.step == "a"
    assert err.location is not None and err.location.line == 6


def test_unknown_step_spec_and_policy_keys() -> None:
    err = steps_error("workflow:\n  - step: a\n    spec: {retries: 3}\n    tool: {kind: noop}\n")
    assert err.field == "spec.retries" and "timeout" in err.message and "priority" in err.message
    err = steps_error(
        "workflow:\n  - step: a\n    spec: {policy: {failure: {mode: ignore}}}\n    tool: {kind: noop}\n"
    )
    assert "unknown failure mode 'ignore'" in err.message and "fail_fast, best_effort" in err.message


def test_admit_rule_needs_when_and_allow() -> None:
    err = steps_error(
        "workflow:\n  - step: a\n    spec: {policy: {admit: {rules: [{then: {allow: true}}]}}}\n    tool: {kind: noop}\n"
    )
    assert "needs 'when'" in err.message and err.step == "a"
    err = steps_error(
        "workflow:\n  - step: a\n    spec: {policy: {admit: {rules: [{when: x, then: {allow: 1}}]}}}\n"
        "    tool: {kind: noop}\n"
    )
    assert err.field == "spec.policy.admit.rules[0].then.allow" and "true or false" in err.message


def test_step_input_merges_into_each_task_task_values_win() -> None:
    pb = parse(
        with_head(
            """\
            workflow:
              - step: a
                input: {x: 1, y: 1}
                tool:
                  - {name: one, kind: noop, input: {y: 2}}
                  - {name: two, kind: noop}
            """
        )
    )
    one, two = pb.steps["a"].tool
    assert one.input == {"x": 1, "y": 2}
    assert two.input == {"x": 1, "y": 1}


# --------------------------------------------------------------------------- tools and tasks


def test_single_task_takes_step_name_or_its_own_name() -> None:
    pb = parse(
        with_head(
            "workflow:\n  - step: a\n    tool: {kind: noop}\n  - step: b\n    tool: {kind: noop, name: x}\n"
        )
    )
    assert pb.steps["a"].tool[0].name == "a"
    assert pb.steps["b"].tool[0].name == "x"


def test_pipeline_names_unnamed_tasks_by_position() -> None:
    pb = parse(
        with_head(
            "workflow:\n  - step: a\n    tool:\n      - kind: noop\n      - {kind: noop, name: b}\n      - kind: noop\n"
        )
    )
    step = pb.steps["a"]
    assert step.pipeline is True
    assert [t.name for t in step.tool] == ["task_0", "b", "task_2"]


def test_pipeline_labels_unique_and_not_empty() -> None:
    err = steps_error(
        "workflow:\n  - step: a\n    tool:\n      - {kind: noop, name: x}\n      - {kind: noop, name: x}\n"
    )
    assert "duplicate task name 'x'" in err.message and err.step == "a" and err.field == "tool[1].name"
    assert err.location is not None and err.location.line == 8
    err = steps_error("workflow:\n  - step: a\n    tool: []\n")
    assert "empty" in err.message and err.step == "a"


def test_unknown_tool_kind_quotes_kind_names_step_line_and_allowed() -> None:
    err = steps_error("workflow:\n  - step: start\n    tool: {kind: snowflake}\n")
    assert "unknown tool kind 'snowflake'" in err.message
    assert "allowed: " + ", ".join(TOOL_KINDS) in err.message
    assert err.step == "start" and err.field == "tool.kind"
    assert err.location is not None and err.location.line == 6


def test_unknown_kind_in_pipeline_item() -> None:
    err = steps_error(
        "workflow:\n  - step: s\n    tool:\n      - {kind: noop}\n      - {kind: rhai, code: x}\n"
    )
    assert "'rhai'" in err.message and err.field == "tool[1].kind"
    assert err.location is not None and err.location.line == 8


def test_task_without_kind() -> None:
    err = steps_error("workflow:\n  - step: s\n    tool: {url: x}\n")
    assert "needs 'kind'" in err.message and err.step == "s"


def test_tool_of_wrong_type() -> None:
    err = steps_error("workflow:\n  - step: s\n    tool: 5\n")
    assert "'tool' must be a map or a list, got an integer" in err.message
    err = steps_error("workflow:\n  - step: s\n    tool: [5]\n")
    assert "'tool[0]' must be a map" in err.message


def test_task_common_keys_and_tool_fields() -> None:
    pb = parse(
        with_head(
            """\
            workflow:
              - step: a
                tool:
                  kind: http
                  method: POST
                  url: "{{ api }}/x"
                  json: {a: 1}
                  input: {k: v}
                  auth: my_cred
                  set: {ctx.x: "{{ output.data }}"}
                  output: {store: {kind: memory}}
                  timeout: 7
                  spec:
                    accept_status: [404, 409]
                    retry_budget: 3
            """
        )
    )
    task = pb.steps["a"].tool[0]
    assert task.config == {"method": "POST", "url": "{{ api }}/x", "json": {"a": 1}, "timeout": 7}
    assert task.input == {"k": "v"} and task.auth == "my_cred"
    assert task.set == {"ctx.x": "{{ output.data }}"}
    assert task.timeout == 7.0
    assert task.accept_status == (404, 409)
    assert task.spec == {"retry_budget": 3}
    assert task.location is not None and task.location.line == 7


def test_credential_is_an_alias_of_auth() -> None:
    pb = parse(
        with_head("workflow:\n  - step: a\n    tool: {kind: postgres, credential: pg, command: 'select 1'}\n")
    )
    task = pb.steps["a"].tool[0]
    assert task.auth == "pg" and "credential" not in task.config and pb.warnings == ()
    err = steps_error("workflow:\n  - step: a\n    tool: {kind: postgres, auth: a, credential: b}\n")
    assert "both 'auth' and 'credential'" in err.message


@pytest.mark.parametrize(
    ("tool", "seconds"),
    [
        ("{kind: http, url: x, spec: {timeout: 15}}", 15.0),
        ("{kind: http, url: x, spec: {timeout: '2m'}}", 120.0),
        ("{kind: http, url: x, spec: {timeout: {connect: 5, read: 15}}}", 15.0),
        ("{kind: http, url: x, spec: {timeout: {connect: 5, total: 9}}}", 9.0),
        ("{kind: shell, command: ls, timeout_seconds: 3}", 3.0),
        ("{kind: python, code: x, timeout: 2.5}", 2.5),
        ("{kind: python, code: x, timeout: '{{ t }}'}", None),
        ("{kind: python, code: x, timeout: 9, spec: {timeout: 4}}", 4.0),
    ],
)
def test_task_timeouts(tool: str, seconds: float | None) -> None:
    pb = parse(with_head(f"workflow:\n  - step: a\n    tool: {tool}\n"))
    assert pb.steps["a"].tool[0].timeout == seconds


def test_bad_task_timeout_and_accept_status() -> None:
    err = steps_error("workflow:\n  - step: a\n    tool: {kind: http, spec: {timeout: {read: soon}}}\n")
    assert err.field == "tool.spec.timeout.read"
    err = steps_error("workflow:\n  - step: a\n    tool: {kind: http, spec: {accept_status: [ok]}}\n")
    assert err.field == "tool.spec.accept_status[0]" and "integer" in err.message


# --------------------------------------------------------------------------- task policies


def policy(rules: str, tool_kind: str = "noop") -> str:
    return with_head(
        f"""\
        workflow:
          - step: s
            tool:
              - name: first
                kind: noop
              - name: second
                kind: {tool_kind}
                spec:
                  policy:
                    rules: {rules}
        """
    )


def test_policy_rules_build() -> None:
    pb = parse(
        policy(
            "[{when: '{{ a }}', then: {do: retry, attempts: 3, backoff: linear, delay: '500ms', max_delay: 2}},"
            " {when: true, then: {do: jump, to: first, set: {iter.n: 1}}},"
            " {else: {then: {do: continue}}}]"
        )
    )
    rules = pb.steps["s"].tool[1].rules
    assert rules == (
        Rule(when="{{ a }}", do="retry", attempts=3, backoff="linear", delay=0.5, max_delay=2.0),
        Rule(when="true", do="jump", to="first", set={"iter.n": 1}),
        Rule(when=None, do="continue"),
    )


def test_rule_defaults() -> None:
    rule = parse(policy("[{when: x, then: {set: {ctx.a: 1}}}]")).steps["s"].tool[1].rules[0]
    assert (rule.do, rule.backoff, rule.delay, rule.attempts, rule.max_delay) == (
        "continue",
        "none",
        0.0,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("rules", "field", "expected"),
    [
        ("[{when: x, then: {do: skip}}]", "then.do", "unknown policy action 'skip'"),
        ("[{when: x, then: {do: retry, attempts: x}}]", "then.attempts", "must be an integer, got a string"),
        ("[{when: x, then: {do: retry, attempts: 0}}]", "then.attempts", "at least 1"),
        (
            "[{when: x, then: {do: retry, backoff: random}}]",
            "then.backoff",
            "none, fixed, linear, exponential",
        ),
        ("[{when: x, then: {do: retry, delay: -1}}]", "then.delay", "zero or more"),
        ("[{when: x, then: {do: jump, to: nowhere}}]", "then.to", "task names here: first, second"),
        ("[{when: x, then: {do: jump}}]", "then.to", "'do: jump' needs 'to'"),
        ("[{when: x, then: {do: fail, to: first}}]", "then.to", "only used with 'do: jump'"),
        ("[{when: x, then: {do: fail, extra: 1}}]", "then.extra", "allowed keys: attempts, backoff, delay"),
        ("[{then: {do: fail}}]", "when", "needs 'when'"),
        ("[{when: x}]", "", "needs exactly one of 'then' or 'else'"),
        ("[{when: x, then: {do: fail}, else: {then: {do: fail}}}]", "", "needs exactly one of"),
        ("[5]", "", "must be a map"),
    ],
)
def test_policy_errors(rules: str, field: str, expected: str) -> None:
    err = error(policy(rules))
    assert expected in err.message
    assert err.step == "s"
    assert err.field is not None and err.field.startswith("tool[1].spec.policy.rules[0]")
    assert err.field.endswith(field)
    assert err.location is not None and err.location.line == 13


def test_jump_to_previous_resolves_to_the_previous_label() -> None:
    pb = parse(policy("[{when: x, then: {do: jump, to: previous}}]"))
    assert pb.steps["s"].tool[1].rules[0].to == "first"
    err = steps_error(
        "workflow:\n  - step: s\n    tool:\n      - kind: noop\n"
        "        spec: {policy: {rules: [{when: x, then: {do: jump, to: previous}}]}}\n"
    )
    assert "no previous task" in err.message


def test_single_task_may_jump_to_itself() -> None:
    pb = parse(
        with_head(
            "workflow:\n  - step: s\n    tool: {kind: noop, spec: {policy: {rules: [{when: x, then: {do: jump, to: s}}]}}}\n"
        )
    )
    assert pb.steps["s"].tool[0].rules[0].to == "s"


# --------------------------------------------------------------------------- loops


def loop_step(loop: str) -> str:
    return with_head(f"workflow:\n  - step: l\n    loop: {loop}\n    tool: {{kind: noop}}\n")


def test_loop_defaults_and_values() -> None:
    assert parse(loop_step("{in: [1, 2], iterator: x}")).steps["l"].loop == Loop(in_=[1, 2], iterator="x")
    loop = (
        parse(loop_step("{in: '{{ xs }}', iterator: x, spec: {mode: parallel, max_in_flight: '{{ n }}'}}"))
        .steps["l"]
        .loop
    )
    assert loop == Loop(in_="{{ xs }}", iterator="x", mode="parallel", max_in_flight="{{ n }}")
    loop = parse(loop_step("{in: 3, iterator: x, spec: {max_in_flight: '4'}}")).steps["l"].loop
    assert loop is not None and loop.max_in_flight == 4


def test_loop_failure_mode_from_loop_spec_policy() -> None:
    pb = parse(
        loop_step("{in: [1], iterator: x, spec: {policy: {exec: distributed, failure: {mode: best_effort}}}}")
    )
    assert pb.steps["l"].failure_mode == "best_effort"
    err = error(
        with_head(
            "workflow:\n  - step: l\n    spec: {policy: {failure: {mode: fail_fast}}}\n"
            "    loop: {in: [1], iterator: x, spec: {policy: {failure: {mode: best_effort}}}}\n    tool: {kind: noop}\n"
        )
    )
    assert "contradicts" in err.message and err.step == "l"


@pytest.mark.parametrize(
    ("loop", "field", "expected"),
    [
        ("{in: [1], iterator: [1]}", "loop.iterator", "must be a string, got a list"),
        ("{in: [1], iterator: a-b}", "loop.iterator", "plain name"),
        ("{iterator: x}", "loop.in", "'loop' needs 'in'"),
        ("{in: [1]}", "loop.iterator", "needs 'iterator'"),
        ("{in: [1], iterator: x, spec: {max_in_flight: -1}}", "loop.spec.max_in_flight", "at least 1"),
        (
            "{in: [1], iterator: x, spec: {max_in_flight: 1.5}}",
            "loop.spec.max_in_flight",
            "integer or a string",
        ),
        (
            "{in: [1], iterator: x, spec: {max_in_flight: many}}",
            "loop.spec.max_in_flight",
            "positive integer",
        ),
        ("{in: [1], iterator: x, spec: {mode: random}}", "loop.spec.mode", "sequential, parallel"),
        ("{in: [1], iterator: x, filter: y}", "loop.filter", "allowed keys: in, iterator, spec"),
        ("{cursor: {kind: postgres}, iterator: x}", "cursor", "cursor loops are not supported yet"),
        ("{in: [1], iterator: x, spec: {mode: cursor}}", "spec", "cursor loops are not supported yet"),
        ("[1, 2]", "loop", "must be a map"),
    ],
)
def test_loop_errors(loop: str, field: str, expected: str) -> None:
    err = error(loop_step(loop))
    assert expected in err.message
    assert err.step == "l" and err.field == field
    assert err.location is not None and err.location.line == 6


# --------------------------------------------------------------------------- routing


def test_canonical_router() -> None:
    pb = parse(
        with_head(
            """\
            workflow:
              - step: a
                tool: {kind: noop}
                next:
                  spec: {mode: inclusive, on_no_match: quiet}
                  arcs:
                    - {step: b, when: "{{ x }}", set: {ctx.tier: gold}}
                    - step: c
                      when: false
              - step: b
                tool: {kind: noop}
                next: {arcs: [{step: end}]}
              - step: c
                tool: {kind: noop}
            """
        )
    )
    router = pb.steps["a"].next
    assert router is not None and router.mode == "inclusive"
    b, c = router.arcs
    assert (b.step, b.when, b.set) == ("b", "{{ x }}", {"ctx.tier": "gold"})
    assert (c.step, c.when) == ("c", "false")
    assert b.location is not None and b.location.line == 10
    assert c.location is not None and c.location.line == 11
    end_router = pb.steps["b"].next
    assert end_router is not None and end_router.mode == "exclusive"
    assert end_router.arcs == (Arc(step="end", location=end_router.arcs[0].location),)


def test_arc_to_unknown_step_names_line_step_and_existing_steps() -> None:
    err = steps_error(
        "workflow:\n  - step: a\n    tool: {kind: noop}\n    next:\n      arcs:\n        - step: nope\n"
        "  - step: b\n    tool: {kind: noop}\n"
    )
    assert "'nope'" in err.message and "existing steps: a, b" in err.message
    assert err.step == "a" and err.field == "next.arcs[0].step"
    assert err.location is not None and err.location.line == 9


def test_end_is_a_sentinel_only_without_an_end_step() -> None:
    pb = parse(with_head("workflow:\n  - step: a\n    tool: {kind: noop}\n    next: {arcs: [{step: end}]}\n"))
    assert pb.steps["a"].next is not None and pb.steps["a"].next.arcs[0].step == "end"


@pytest.mark.parametrize(
    ("next_", "field", "expected"),
    [
        (
            "{spec: {mode: all}, arcs: []}",
            "next.spec.mode",
            "unknown next mode 'all'; allowed: exclusive, inclusive",
        ),
        ("{arcs: [{when: x}]}", "next.arcs[0].step", "needs 'step'"),
        ("{arcs: [{step: a, args: 1}]}", "args", "must be a map"),
        ("{arcs: [{step: a, go: 1}]}", "next.arcs[0].go", "allowed keys: set, step, when"),
        ("{arcs: [{step: a, when: [1]}]}", "next.arcs[0].when", "a string or true or false"),
        ("{spec: {mode: exclusive}}", "next.arcs", "needs 'arcs'"),
        ("{arcs: a}", "next.arcs", "must be a list"),
        ("5", "next", "must be a map"),
    ],
)
def test_router_errors(next_: str, field: str, expected: str) -> None:
    err = steps_error(f"workflow:\n  - step: a\n    tool: {{kind: noop}}\n    next: {next_}\n")
    assert expected in err.message
    assert err.step == "a" and err.field == field
    assert err.location is not None and err.location.line == 7


# --------------------------------------------------------------------------- workbook


WORKBOOK = """\
workbook:
  - name: classify
    tool:
      kind: python
      input: {amount: 0, scale: 1}
      code: "result = {'tier': 'high' if amount > 100 else 'low'}"
      spec: {timeout: 5}
  - name: ping
    tool: {kind: http, url: "http://x", method: GET}
"""


def test_workbook_task_is_substituted_with_inputs_merged() -> None:
    pb = parse(
        with_head(
            WORKBOOK
            + """\
            workflow:
              - step: start
                input: {scale: 2}
                tool: {kind: workbook, name: classify, input: {amount: "{{ order_amount }}"}}
              - step: many
                tool:
                  - {kind: workbook, name: ping}
                  - {kind: workbook, name: classify, auth: cred}
            """.replace("            ", "")
        )
    )
    task = pb.steps["start"].tool[0]
    assert task.kind == "python" and task.name == "start"
    assert task.input == {"amount": "{{ order_amount }}", "scale": 2}
    assert task.config == {"code": "result = {'tier': 'high' if amount > 100 else 'low'}"}
    assert task.timeout == 5.0
    ping, classify = pb.steps["many"].tool
    assert (ping.kind, ping.name, ping.config) == ("http", "ping", {"url": "http://x", "method": "GET"})
    assert (classify.kind, classify.name, classify.auth) == ("python", "classify", "cred")
    assert classify.input == {"amount": 0, "scale": 1}
    assert pb.workbook["ping"].kind == "http" and set(pb.workbook) == {"classify", "ping"}


def test_missing_workbook_task_lists_names() -> None:
    err = error(with_head(WORKBOOK + "workflow:\n  - step: s\n    tool: {kind: workbook, name: clasify}\n"))
    assert "'clasify'" in err.message and "classify, ping" in err.message
    assert err.step == "s" and err.location is not None and err.location.line == 15
    err = error(with_head(WORKBOOK + "workflow:\n  - step: s\n    tool: {kind: workbook}\n"))
    assert "needs 'name'" in err.message and "classify, ping" in err.message
    err = error(with_head("workflow:\n  - step: s\n    tool: {kind: workbook, name: x}\n"))
    assert "no workbook" in err.message


def test_workbook_entries_are_checked() -> None:
    err = error(
        with_head(
            "workbook:\n  - name: w\n    tool: {kind: workbook, name: w}\nworkflow: [{step: a, tool: {kind: noop}}]\n"
        )
    )
    assert "cannot itself be kind 'workbook'" in err.message
    err = error(
        with_head(
            "workbook:\n  - {name: w, tool: {kind: noop}}\n  - {name: w, tool: {kind: noop}}\nworkflow: [{step: a, tool: {kind: noop}}]\n"
        )
    )
    assert "duplicate workbook task 'w'" in err.message
    err = error(
        with_head("workbook:\n  - {name: w, tool: {kind: sftp}}\nworkflow: [{step: a, tool: {kind: noop}}]\n")
    )
    assert "unknown tool kind 'sftp'" in err.message and err.field == "workbook[0].tool.kind"
    err = error(with_head("workbook:\n  - {name: w}\nworkflow: [{step: a, tool: {kind: noop}}]\n"))
    assert "needs 'tool'" in err.message


# --------------------------------------------------------------------------- executor


def test_executor_entry_and_final_steps() -> None:
    body = "workflow:\n  - step: a\n    tool: {kind: noop}\n  - step: b\n    tool: {kind: noop}\n"
    pb = parse(with_head("executor: {spec: {entry_step: b, final_step: a, no_next_is_error: true}}\n" + body))
    assert (pb.executor.entry_step, pb.executor.final_step, pb.executor.no_next_is_error) == ("b", "a", True)
    assert pb.entry_step == "b" and pb.executor.profile == "auto"
    for key in ("entry_step", "final_step"):
        err = error(with_head(f"executor: {{spec: {{{key}: zz}}}}\n" + body))
        assert (
            f"executor.spec.{key} 'zz' is not a step" in err.message and "existing steps: a, b" in err.message
        )
        assert err.location is not None and err.location.line == 4


def test_entry_step_prefers_start() -> None:
    pb = parse(
        with_head("workflow:\n  - step: a\n    tool: {kind: noop}\n  - step: start\n    tool: {kind: noop}\n")
    )
    assert pb.entry_step == "start"


# --------------------------------------------------------------------------- load()


def test_load_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "pb.yaml"
    path.write_text(APPENDIX_B, encoding="utf-8")
    pb = parser.load(path)
    assert pb.source_file == str(path) and pb.name == "order_backfill"


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as missing:
        parser.load(tmp_path / "missing.yaml")
    assert "missing.yaml" in missing.value.message
    with pytest.raises(UsageError):
        parser.load(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(with_head("workflow: 5\n"), encoding="utf-8")
    with pytest.raises(PlaybookError) as invalid:
        parser.load(bad)
    assert invalid.value.location is not None and invalid.value.location.file == str(bad)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(PlaybookError) as undecodable:
        parser.load(binary)
    assert "UTF-8" in undecodable.value.message


def test_error_to_dict_carries_location() -> None:
    err = steps_error("workflow:\n  - step: start\n    tool: {kind: htp}\n")
    assert err.to_dict() == {
        "kind": "validation",
        "message": err.message,
        "step": "start",
        "field": "tool.kind",
        "file": "pb.yaml",
        "line": 6,
        "column": 18,
    }


# --------------------------------------------------------------------------- robustness


def _paths(value: object, path: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*path, index))
    return found


def _replaced(value: object, path: tuple[object, ...], new: object) -> object:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {k: (_replaced(v, rest, new) if k == head else v) for k, v in value.items()}
    assert isinstance(value, list)
    return [(_replaced(v, rest, new) if i == head else v) for i, v in enumerate(value)]


@pytest.mark.parametrize("replacement", [None, 7, "x", [], {}, [None], {"k": None}, True])
def test_any_value_anywhere_gives_a_playbook_error_or_a_playbook(replacement: object) -> None:
    """Replacing each node of a rich playbook with odd values never leaks a raw exception."""
    document = yaml.safe_load(APPENDIX_B)
    outcomes = {"ok": 0, "error": 0}
    for path in _paths(document)[1:]:
        text = json.dumps(_replaced(document, path, replacement), indent=1)  # JSON is YAML
        try:
            parser.parse(text)
            outcomes["ok"] += 1
        except PlaybookError as exc:
            assert exc.message and exc.location is not None
            assert "NoETL bug" not in exc.message, (path, exc)
            outcomes["error"] += 1
    assert outcomes["error"] > 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("path", "../secrets/x"),
        ("path", "a/../b"),
        ("path", "/../etc/passwd"),
        ("path", "a//b"),
        ("path", "a\\\\b"),
        ("name", "../up"),
    ],
)
def test_catalog_paths_must_be_relative_names(field: str, value: str) -> None:
    text = f"apiVersion: noetl.io/v2\nkind: Playbook\nmetadata:\n  {field}: '{value}'\n"
    if field == "path":
        text += "  name: ok\n"
    text += "workflow:\n  - step: start\n    tool: {kind: noop}\n"
    exc = error(text)
    assert f"metadata.{field}" in exc.message and "not a valid catalog path" in exc.message
    assert exc.location is not None and exc.location.line == 4


def test_a_nested_relative_catalog_path_is_fine() -> None:
    text = "apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: x, path: team/etl/daily-v2}\n"
    assert parse(text + "workflow:\n  - step: start\n    tool: {kind: noop}\n").path == "team/etl/daily-v2"


def test_a_leading_slash_in_the_catalog_path_is_a_legacy_rewrite() -> None:
    """Upstream accepted ``path: /vars_test/api_test``; it becomes the relative name, with a warning."""
    text = "apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: x, path: /team/etl}\n"
    text += "workflow:\n  - step: start\n    tool: {kind: noop}\n"
    found = parse(text)
    assert found.path == "team/etl"
    assert any("leading '/'" in w and "'team/etl'" in w for w in found.warnings)
    exc = error(text, strict=True)
    assert "legacy" in exc.message and exc.location is not None and exc.location.line == 3
