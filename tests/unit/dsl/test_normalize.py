"""Legacy syntax (REFERENCE Appendix A) -> canonical model, with one warning per rewrite; strict rejects."""

from __future__ import annotations

import json
import textwrap

import pytest
import yaml

from noetl.dsl import parser
from noetl.dsl.model import AdmitRule, Arc, Loop, Playbook, Router, Rule
from noetl.errors import PlaybookError

HEAD = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: legacy}
"""


def parse(body: str, *, head: str = HEAD) -> Playbook:
    return parser.parse(head + textwrap.dedent(body), source="old.yaml")


def strict_error(body: str, *, head: str = HEAD) -> PlaybookError:
    with pytest.raises(PlaybookError) as caught:
        parser.parse(head + textwrap.dedent(body), source="old.yaml", strict=True)
    return caught.value


def error(body: str) -> PlaybookError:
    with pytest.raises(PlaybookError) as caught:
        parse(body)
    return caught.value


def arcs(router: Router | None) -> list[tuple[str, str | None]]:
    assert router is not None
    return [(arc.step, arc.when) for arc in router.arcs]


def test_warning_names_line_step_and_rewrite() -> None:
    body = """\
    workflow:
      - step: fetch
        tool: {kind: python, args: {x: 2}, code: "result = x"}
    """
    pb = parse(body)
    assert pb.warnings == ("line 6, step 'fetch': 'args' is legacy; rewritten to 'input'",)
    assert pb.steps["fetch"].tool[0].input == {"x": 2}
    err = strict_error(body)
    assert "'args' is legacy syntax" in err.message and "'input'" in err.message and "strict" in err.message
    assert err.step == "fetch" and err.location is not None and err.location.line == 6


def test_args_merge_with_input_and_input_wins() -> None:
    pb = parse("workflow:\n  - step: a\n    tool: {kind: noop, args: {x: 1, y: 1}, input: {y: 2}}\n")
    assert pb.steps["a"].tool[0].input == {"x": 1, "y": 2}


def test_api_version_v1_kind_and_root_vars() -> None:
    head = "apiVersion: noetl.io/v1\nkind: playbook\nmetadata: {name: old}\nvars: {a: 1, b: 1}\nworkload: {b: 2}\n"
    pb = parse("workflow: [{step: a, tool: {kind: noop}}]\n", head=head)
    assert pb.api_version == "noetl.io/v2"
    assert pb.workload == {"a": 1, "b": 2}
    assert pb.warnings == (
        "line 1: apiVersion 'noetl.io/v1' is legacy; rewritten to 'noetl.io/v2'",
        "line 2: kind 'playbook' is legacy; rewritten to 'Playbook'",
        "line 4: root 'vars' is legacy; rewritten to 'workload' (merged)",
    )
    assert (
        "apiVersion 'noetl.io/v1'"
        in strict_error("workflow: [{step: a, tool: {kind: noop}}]\n", head=head).message
    )


def test_root_vars_must_be_a_map() -> None:
    err = parse_error_with_head("apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: x}\nvars: [1]\n")
    assert "'vars' must be a map" in err.message and err.location is not None and err.location.line == 4


def parse_error_with_head(head: str) -> PlaybookError:
    with pytest.raises(PlaybookError) as caught:
        parser.parse(head + "workflow: [{step: a, tool: {kind: noop}}]\n")
    return caught.value


def test_step_without_tool_becomes_noop() -> None:
    body = "workflow:\n  - step: a\n    next: {arcs: [{step: b}]}\n  - step: b\n"
    pb = parse(body)
    assert [t.kind for t in pb.steps["a"].tool] == ["noop"] and pb.steps["b"].tool[0].kind == "noop"
    assert (
        pb.warnings[0]
        == "line 5, step 'a': a step without 'tool' is legacy; rewritten to 'tool: {kind: noop}'"
    )
    err = strict_error(body)
    assert "without 'tool'" in err.message and err.step == "a" and err.location is not None
    assert err.location.line == 5


def test_string_tool_with_sibling_fields() -> None:
    pb = parse(
        """\
        workflow:
          - step: a
            tool: python
            args: {n: 1}
            libs: {json: json}
            code: "result = n"
            next: [b]
          - step: b
        """
    )
    task = pb.steps["a"].tool[0]
    assert (task.kind, dict(task.input), dict(task.config)) == (
        "python",
        {"n": 1},
        {"libs": {"json": "json"}, "code": "result = n"},
    )
    assert arcs(pb.steps["a"].next) == [("b", None)]
    assert any("'tool: python' (a string)" in w for w in pb.warnings)


def test_g0_typed_step_moves_tool_fields() -> None:
    pb = parse(
        """\
        workflow:
          - step: check
            type: python
            data: {t: "{{ workload.temp }}"}
            code: |
              def main(t):
                  return {"hot": t > 25}
            next:
              - when: "{{ result.hot }}"
                then: [{step: cool_down}]
              - else: [{step: end}]
          - step: cool_down
            type: http
            endpoint: "http://x/cool"
            method: POST
            data: {level: 3}
            with: {who: me}
        """
    )
    check = pb.steps["check"]
    task = check.tool[0]
    assert task.kind == "python" and task.input == {"t": "{{ workload.temp }}"}
    assert task.config == {"code": 'def main(t):\n    return {"hot": t > 25}\n'}
    assert check.next == Router(
        mode="exclusive",
        arcs=(
            Arc(step="cool_down", when="{{ check.hot }}", location=check.next.arcs[0].location),  # type: ignore[union-attr]
            Arc(step="end", location=check.next.arcs[1].location),  # type: ignore[union-attr]
        ),
    )
    http = pb.steps["cool_down"].tool[0]
    assert http.kind == "http"
    assert http.config == {"url": "http://x/cool", "method": "POST", "data": {"level": 3}}, (
        "http data is the body"
    )
    assert http.input == {"who": "me"}
    assert any("'type: python' with tool fields on the step" in w for w in pb.warnings)
    assert any("http 'endpoint'" in w for w in pb.warnings)


def test_g0_type_and_tool_together_is_an_error() -> None:
    err = error("workflow:\n  - step: a\n    type: python\n    tool: {kind: python}\n")
    assert "both 'type'" in err.message and err.step == "a"


def test_g0_workbook_step_and_workbook_entry() -> None:
    pb = parse(
        """\
        workbook:
          - name: double
            type: python
            data: {x: 0}
            code: "result = x * 2"
        workflow:
          - step: a
            type: workbook
            name: double
            with: {x: 4}
        """
    )
    task = pb.steps["a"].tool[0]
    assert (task.kind, dict(task.input), dict(task.config)) == (
        "python",
        {"x": 4},
        {"code": "result = x * 2"},
    )
    assert pb.workbook["double"].input == {"x": 0}


def test_g0_iterator_step_becomes_loop() -> None:
    pb = parse(
        """\
        workflow:
          - step: each
            type: iterator
            collection: "{{ workload.cities }}"
            element: city
            mode: async
            concurrency: 3
            task:
              type: http
              url: "http://x/{{ city }}"
        """
    )
    step = pb.steps["each"]
    assert step.loop == Loop(in_="{{ workload.cities }}", iterator="city", mode="parallel", max_in_flight=3)
    assert step.tool[0].kind == "http" and step.tool[0].config == {"url": "http://x/{{ city }}"}
    assert any("'type: iterator'" in w for w in pb.warnings)


def test_g0_iterator_filters_are_rejected_clearly() -> None:
    err = error(
        "workflow:\n  - step: each\n    type: iterator\n    collection: [1]\n    element: x\n    where: x > 1\n"
    )
    assert "iterator 'where' is not supported" in err.message and "loop.in" in err.message
    assert err.step == "each" and err.location is not None and err.location.line == 9


def test_step_level_data_with_args_become_step_input() -> None:
    pb = parse("workflow:\n  - step: a\n    with: {x: 1}\n    tool: {kind: noop, input: {y: 2}}\n")
    assert pb.steps["a"].tool[0].input == {"x": 1, "y": 2}


def test_step_when_becomes_admission_rules() -> None:
    body = 'workflow:\n  - step: a\n    when: "{{ go }}"\n    tool: {kind: noop}\n'
    pb = parse(body)
    assert pb.steps["a"].admit == (AdmitRule(when="{{ go }}", allow=True), AdmitRule(when=None, allow=False))
    assert pb.warnings == ("line 6, step 'a': step 'when' is legacy; rewritten to 'spec.policy.admit.rules'",)
    assert "step 'when'" in strict_error(body).message
    err = error(
        "workflow:\n  - step: a\n    when: x\n    spec: {policy: {admit: {rules: []}}}\n    tool: {kind: noop}\n"
    )
    assert "both 'when'" in err.message


def test_step_vars_become_set() -> None:
    pb = parse(
        'workflow:\n  - step: a\n    tool: {kind: noop}\n    vars: {n: "{{ result.count }}", iter.k: 1}\n'
    )
    assert pb.steps["a"].set == {"ctx.n": "{{ output.data.count }}", "iter.k": 1}


def test_g0_retry_block_becomes_task_policy() -> None:
    pb = parse(
        """\
        workflow:
          - step: a
            tool: {kind: http, url: x}
            retry:
              max_attempts: 4
              initial_delay: 0.5
              max_delay: 10
              stop_when: "{{ output.http.status == 404 }}"
        """
    )
    assert pb.steps["a"].tool[0].rules == (
        Rule(when="{{ output.http.status == 404 }}", do="fail"),
        Rule(
            when="{{ output.status == 'error' }}",
            do="retry",
            attempts=4,
            backoff="exponential",
            delay=0.5,
            max_delay=10.0,
        ),
    )
    err = error("workflow:\n  - step: a\n    tool: {kind: noop}\n    retry: {tries: 3}\n")
    assert "unknown key 'tries'" in err.message and "max_attempts" in err.message
    err = error("workflow:\n  - step: a\n    tool: [{kind: noop}]\n    retry: 3\n")
    assert "single task" in err.message


def test_eval_rules_and_scoped_sets() -> None:
    pb = parse(
        """\
        workflow:
          - step: a
            tool:
              - name: fetch
                kind: http
                url: x
                eval:
                  - expr: "{{ output.status == 'error' }}"
                    do: retry
                    attempts: 3
                  - expr: "{{ output.data.more }}"
                    do: jump
                    target: fetch
                    set_vars: {iter.page: 2}
                  - else: {do: break}
              - name: after
                kind: noop
                spec:
                  policy:
                    rules:
                      - when: "{{ true }}"
                        then: {do: continue, set_ctx: {total: 1}, set_iter: {page: 2}}
        """
    )
    fetch, after = pb.steps["a"].tool
    assert fetch.rules == (
        Rule(when="{{ output.status == 'error' }}", do="retry", attempts=3),
        Rule(when="{{ output.data.more }}", do="jump", to="fetch", set={"iter.page": 2}),
        Rule(when=None, do="break"),
    )
    assert after.rules == (Rule(when="{{ true }}", do="continue", set={"ctx.total": 1, "iter.page": 2}),)


def test_else_without_then_is_accepted_with_warning() -> None:
    body = "workflow:\n  - step: a\n    tool: {kind: noop, spec: {policy: {rules: [{else: {do: fail}}]}}}\n"
    pb = parse(body)
    assert pb.steps["a"].tool[0].rules == (Rule(when=None, do="fail"),)
    assert pb.warnings == (
        "line 6, step 'a': 'else: {do: ...}' without 'then' is legacy; rewritten to 'else: {then: {do: ...}}'",
    )
    assert "without 'then'" in strict_error(body).message


def test_pipeline_label_items() -> None:
    pb = parse(
        "workflow:\n  - step: a\n    tool:\n      - fetch: {kind: http, url: x}\n      - {kind: noop}\n"
    )
    assert [(t.name, t.kind) for t in pb.steps["a"].tool] == [("fetch", "http"), ("task_1", "noop")]
    assert pb.warnings == (
        "line 7, step 'a': pipeline item 'fetch: {kind: ...}' is legacy; rewritten to '{name: fetch, kind: ...}'",
    )
    err = error("workflow:\n  - step: a\n    tool:\n      - fetch: {kind: http, name: y}\n")
    assert "both a label key and 'name'" in err.message


def test_loop_mode_moves_under_spec() -> None:
    pb = parse(
        "workflow:\n  - step: l\n    loop: {in: [1], iterator: i, mode: async, max_in_flight: 2}\n    tool: {kind: noop}\n"
    )
    assert pb.steps["l"].loop == Loop(in_=[1], iterator="i", mode="parallel", max_in_flight=2)
    assert any("'loop.mode' is legacy" in w for w in pb.warnings)
    assert any("loop mode 'async'" in w for w in pb.warnings)
    pb = parse(
        "workflow:\n  - step: l\n    loop: {collection: [1], element: i, concurrency: 3}\n    tool: {kind: noop}\n"
    )
    assert pb.steps["l"].loop == Loop(in_=[1], iterator="i", max_in_flight=3)


# --------------------------------------------------------------------------- next


def three_steps(next_: str) -> str:
    return (
        "workflow:\n  - step: a\n    tool: {kind: noop}\n"
        + textwrap.indent(f"next: {next_}", "    ")
        + "\n  - step: b\n    tool: {kind: noop}\n  - step: c\n    tool: {kind: noop}\n"
    )


@pytest.mark.parametrize(
    ("next_", "mode", "expected"),
    [
        ("b", "exclusive", [("b", None)]),
        ("[b]", "exclusive", [("b", None)]),
        ("[b, c]", "inclusive", [("b", None), ("c", None)]),
        ("[{step: b}, {step: c}]", "inclusive", [("b", None), ("c", None)]),
        ("[{step: b, when: '{{ x }}'}, {step: c}]", "exclusive", [("b", "{{ x }}"), ("c", None)]),
        ("{step: b}", "exclusive", [("b", None)]),
    ],
)
def test_list_and_string_next_forms(next_: str, mode: str, expected: list[tuple[str, str | None]]) -> None:
    pb = parse(three_steps(next_))
    router = pb.steps["a"].next
    assert router is not None
    assert arcs(router) == expected
    assert router.mode == mode
    assert len(pb.warnings) == 1 and "step 'a'" in pb.warnings[0] and pb.warnings[0].startswith("line 7,")
    assert router.arcs[0].location is not None and router.arcs[0].location.line == 7
    assert strict_error(three_steps(next_)).step == "a"


def test_arc_payload_becomes_set() -> None:
    pb = parse(three_steps("[{step: b, args: {x: 1}, with: {y: 2}, set: {x: 0}}]"))
    router = pb.steps["a"].next
    assert router is not None and router.arcs[0].set == {"x": 0, "y": 2}
    pb = parse(three_steps("{arcs: [{step: b, data: {z: 1}}]}"))
    router = pb.steps["a"].next
    assert router is not None and router.arcs[0].set == {"z": 1}
    assert pb.warnings == ("line 7, step 'a': arc 'data' is legacy; rewritten to arc 'set'",)


def test_list_next_to_unknown_step_still_names_the_line() -> None:
    err = error(three_steps("[b, nope]"))
    assert "'nope'" in err.message and err.location is not None and err.location.line == 7


def test_g0_next_with_several_targets_per_branch() -> None:
    pb = parse(
        three_steps(
            "\n  - when: '{{ result.a }}'\n    then: [{step: b}, {step: c}]\n"
            "  - when: '{{ result.b }}'\n    then: [c]\n  - else: [{step: b, with: {k: 1}}]"
        )
    )
    router = pb.steps["a"].next
    assert router is not None and router.mode == "inclusive"
    assert arcs(router) == [
        ("b", "{{ (a.a) }}"),
        ("c", "{{ (a.a) }}"),
        ("c", "{{ not (a.a) and (a.b) }}"),
        ("b", "{{ not (a.a) and not (a.b) }}"),
    ]
    assert router.arcs[3].set == {"k": 1}


def test_g0_next_that_cannot_be_rewritten() -> None:
    err = error(three_steps("\n  - when: 'x is {{ y }}'\n    then: [b, c]\n  - else: [c]"))
    assert "cannot rewrite" in err.message and err.step == "a"


def test_spec_next_mode_moves_to_router() -> None:
    pb = parse(
        "workflow:\n  - step: a\n    spec: {next_mode: inclusive}\n    tool: {kind: noop}\n"
        "    next: {arcs: [{step: b}, {step: c}]}\n  - step: b\n    tool: {kind: noop}\n  - step: c\n    tool: {kind: noop}\n"
    )
    router = pb.steps["a"].next
    assert router is not None and router.mode == "inclusive"
    assert any("'spec.next_mode'" in w for w in pb.warnings)


# --------------------------------------------------------------------------- G2 case


def test_g2_case_becomes_arcs() -> None:
    pb = parse(
        """\
        workflow:
          - step: check
            tool: {kind: python, args: {t: 1}, code: "result = {'hot': t > 25}"}
            case:
              - when: "{{ event.name == 'step.exit' and response.hot }}"
                then:
                  next: [{step: cool, args: {level: 2}}]
                  set: [{name: seen, value: "{{ response.hot }}"}]
              - when: "{{ event.name == 'call.error' }}"
                then: {next: [{step: end}]}
              - when: "{{ event.name == 'call.done' }}"
                then: {next: [end]}
          - step: cool
            tool: {kind: noop}
        """
    )
    router = pb.steps["check"].next
    assert router is not None and router.mode == "exclusive"
    assert arcs(router) == [
        ("cool", "{{ output.data.hot }}"),
        ("end", "{{ event.name == 'call.error' }}"),
        ("end", None),
    ]
    assert router.arcs[0].set == {"seen": "{{ output.data.hot }}", "level": 2}
    assert any("'case' routing is legacy" in w for w in pb.warnings)


def test_g2_case_with_fallback_next() -> None:
    pb = parse(
        """\
        workflow:
          - step: a
            tool: {kind: noop}
            case:
              - when: "{{ event.name == 'call.error' and output.error.retryable }}"
                then: {next: [b]}
            next: [{step: c}]
          - step: b
            tool: {kind: noop}
          - step: c
            tool: {kind: noop}
        """
    )
    assert arcs(pb.steps["a"].next) == [
        ("b", "{{ event.name == 'call.error' and (output.error.retryable) }}"),
        ("c", None),
    ]


@pytest.mark.parametrize(
    ("then", "expected"),
    [
        ("{retry: {max_attempts: 3}, next: [b]}", "'case' action 'retry' cannot be rewritten"),
        ("{collect: {into: x}, next: [b]}", "'case' action 'collect'"),
        ("{set: {x: 1}}", "without 'next'"),
    ],
)
def test_g2_case_forms_without_clean_rewrite(then: str, expected: str) -> None:
    err = error(
        f"workflow:\n  - step: a\n    tool: {{kind: noop}}\n    case:\n      - when: x\n        then: {then}\n"
        "  - step: b\n    tool: {kind: noop}\n"
    )
    assert expected in err.message and err.step == "a"
    assert "next" in err.message or "spec.policy" in err.message


def test_case_on_unknown_event_is_rejected() -> None:
    err = error(
        "workflow:\n  - step: a\n    tool: {kind: noop}\n    case:\n"
        "      - when: \"{{ event.name == 'step.enter' }}\"\n        then: {next: [a]}\n"
    )
    assert "'step.enter'" in err.message


def test_sink_without_data_is_rejected_with_advice() -> None:
    err = error("workflow:\n  - step: a\n    tool: {kind: noop}\n    sink: {tool: postgres, table: t}\n")
    assert "'sink' needs 'data'" in err.message
    assert err.location is not None and err.location.line == 7


def test_save_to_a_store_we_cannot_write_is_rejected() -> None:
    err = error(
        "workflow:\n  - step: a\n    tool: {kind: noop}\n    save: {storage: event_log, data: {x: 1}}\n"
    )
    assert "'save' to 'event_log' cannot be rewritten" in err.message


def test_save_block_becomes_a_postgres_step_that_takes_the_success_arcs() -> None:
    pb = parse(
        """\
        workflow:
          - step: a
            tool: {kind: python, code: "result = {'id': 1, 'name': 'x'}"}
            save:
              storage: {type: postgres, auth: pg}
              table: app.people
              mode: upsert
              key: id
              data: {id: "{{ this.data.id }}", name: "{{ result.name }}"}
            next:
              - when: "{{ event.name == 'call.error' }}"
                step: handle
              - step: end
          - step: handle
            tool: {kind: noop}
          - step: end
            tool: {kind: noop}
        """
    )
    assert [s.name for s in pb.workflow] == ["a", "a_save", "handle", "end"]
    assert arcs(pb.steps["a"].next) == [("handle", "{{ event.name == 'call.error' }}"), ("a_save", None)]
    assert arcs(pb.steps["a_save"].next) == [("end", None)]
    (task,) = pb.steps["a_save"].tool
    assert task.kind == "postgres" and task.auth == "pg"
    assert task.config["command"] == (
        "INSERT INTO app.people (id, name) VALUES (%(id)s, %(name)s) "
        "ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name"
    )
    assert task.input == {"id": "{{ a.data.id }}", "name": "{{ a.name }}"}
    assert any("'save' block is legacy" in w for w in pb.warnings)


def test_sink_on_a_loop_step_becomes_a_pipeline_task() -> None:
    pb = parse(
        """\
        workflow:
          - step: each
            loop: {in: [1, 2], iterator: n}
            tool: {kind: python, code: "result = {'n': n}"}
            sink: {tool: postgres, table: t, mode: update, key: n, args: {n: "{{ result.n }}", seen: true}}
        """
    )
    step = pb.steps["each"]
    assert step.pipeline and [t.name for t in step.tool] == ["each", "save"]
    assert step.tool[1].config["command"] == "UPDATE t SET seen = %(seen)s WHERE n = %(n)s"
    assert step.tool[1].input == {"n": "{{ each.n }}", "seen": True}


def test_tool_fields_under_spec_and_task_retry_block() -> None:
    pb = parse(
        """\
        workflow:
          - step: a
            tool:
              kind: http
              spec: {method: GET, url: "http://x/{{ p }}", timeout: 5}
              retry: {max_attempts: 3, retry_on_status: [429, 503], backoff_seconds: 2}
        """
    )
    (task,) = pb.steps["a"].tool
    assert task.config == {"method": "GET", "url": "http://x/{{ p }}"} and task.timeout == 5
    assert task.rules == (
        Rule(
            when="{{ output.status == 'error' and (output.http.status in [429, 503]) }}",
            do="retry",
            attempts=3,
            backoff="fixed",
            delay=2,
        ),
    )
    assert len(pb.warnings) == 3


def test_step_level_output_moves_to_the_task_and_else_with_sibling_then() -> None:
    pb = parse(
        """\
        workflow:
          - step: a
            tool:
              kind: noop
              spec:
                policy:
                  rules:
                    - else:
                      then: {do: continue, set: {ctx.done: "{{ outcome.status }}"}}
            output: {store: {kind: memory}}
        """
    )
    (task,) = pb.steps["a"].tool
    assert task.rules == (Rule(when=None, do="continue", set={"ctx.done": "{{ output.status }}"}),)
    assert len(pb.warnings) == 3


def test_legacy_result_names_in_routing_become_output() -> None:
    pb = parse(
        """\
        workload: {response: 1}
        workflow:
          - step: a
            tool: {kind: noop}
            set: {ctx.x: "{{ result.v }}", ctx.y: "{{ response }}", ctx.z: "{{ 'result' ~ this.k }}"}
            next:
              arcs:
                - {step: b, when: "{{ outcome.result.ok and result != 'result' }}", set: {w: "{{ this }}"}}
          - step: b
            tool: {kind: noop}
        """
    )
    a = pb.steps["a"]
    assert a.set == {
        "ctx.x": "{{ output.data.v }}",
        "ctx.y": "{{ response }}",
        "ctx.z": "{{ 'result' ~ output.data.k }}",
    }
    assert arcs(a.next) == [("b", "{{ output.data.ok and output.data != 'result' }}")]
    assert a.next is not None and a.next.arcs[0].set == {"w": "{{ output.data }}"}
    assert len(pb.warnings) == 3


def test_unknown_kind_with_list_args_is_reported_as_the_unknown_kind() -> None:
    err = error("workflow:\n  - step: a\n    tool: {kind: container, args: [echo, hi]}\n")
    assert "unknown tool kind 'container'" in err.message


def test_keychain_legacy_scopes() -> None:
    pb = parse(
        "keychain:\n  - {name: a, scope: execution}\n  - {name: b, scope: catalog}\nworkflow: [{step: s, tool: {kind: noop}}]\n"
    )
    assert [k["scope"] for k in pb.keychain] == ["local", "global"]
    assert len(pb.warnings) == 2


def test_canonical_playbook_has_no_warnings_in_strict_mode() -> None:
    pb = parser.parse(
        HEAD
        + "workflow:\n  - step: a\n    tool: {kind: http, url: x, data: {a: 1}, params: {b: 2}}\n"
        + "    next: {arcs: [{step: end}]}\n",
        strict=True,
    )
    assert pb.warnings == ()
    assert pb.steps["a"].tool[0].config == {"url": "x", "data": {"a": 1}, "params": {"b": 2}}


LEGACY = """\
apiVersion: noetl.io/v1
kind: playbook
metadata: {name: old}
vars: {temp: 30}
workbook:
  - {name: wb, type: python, code: "result = z", data: {z: 0}}
workflow:
  - step: start
    type: python
    data: {t: "{{ workload.temp }}"}
    code: "def main(t):\\n    return {'hot': t > 25}"
    retry: {max_attempts: 2, initial_delay: 1}
    next:
      - when: "{{ result.hot }}"
        then: [{step: g2}]
      - else: [{step: each}]
  - step: g2
    when: "{{ true }}"
    tool: {kind: http, args: {x: 1}, url: x, eval: [{expr: "{{ 1 }}", do: retry, attempts: 2}, {else: {do: fail}}]}
    vars: {n: "{{ result.n }}"}
    case:
      - when: "{{ event.name == 'step.exit' and response.ok }}"
        then: {next: [{step: each, args: {a: 1}}], set: [{name: s, value: 1}]}
  - step: each
    type: iterator
    collection: [1, 2]
    element: item
    mode: sequential
    task: {type: workbook, name: wb, with: {z: 1}}
    next: [fin, end]
  - step: fin
    loop: {in: [1], iterator: i, mode: parallel}
    tool:
      - p: {kind: noop, spec: {policy: {rules: [{when: x, then: {do: jump, to: p, set_ctx: {a: 1}}}]}}}
    save: {storage: {type: postgres, auth: pg}, table: t, mode: upsert, key: [k], data: {k: "{{ this.k }}"}}
  - step: last
    tool: {kind: python, code: "result = 1", retry: {max_attempts: 2, retry_on: [timeout]}}
    sink: {tool: postgres, table: t, args: {k: "{{ result }}"}}
    next: [{step: end, when: "{{ result == 1 }}"}]
"""


def test_whole_legacy_playbook() -> None:
    pb = parser.parse(LEGACY)
    assert [s.name for s in pb.workflow] == ["start", "g2", "each", "fin", "last", "last_save"]
    assert len(pb.warnings) >= 15
    assert pb.steps["each"].tool[0].input == {"z": 1}


@pytest.mark.parametrize("replacement", [None, 3, "x", [], {}, [1], {"k": [None]}])
def test_odd_values_in_legacy_forms_give_playbook_errors(replacement: object) -> None:
    """The normaliser sees raw, unchecked values: any node replaced by any value still ends in a
    PlaybookError or a Playbook, never a raw exception."""
    document = yaml.safe_load(LEGACY)
    for path in _paths(document)[1:]:
        text = json.dumps(_replaced(document, path, replacement))
        try:
            parser.parse(text)
        except PlaybookError as exc:
            assert "NoETL bug" not in exc.message, (path, exc)


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


def test_a_variable_named_result_is_not_renamed() -> None:
    pb = parse(
        """\
        workflow:
          - step: a
            tool: {kind: noop}
            set: {ctx.result: 1}
            next: {arcs: [{step: b, when: "{{ result == 1 }}"}]}
          - step: b
            tool: {kind: noop}
        """
    )
    assert arcs(pb.steps["a"].next) == [("b", "{{ result == 1 }}")]
    assert pb.warnings == ()


def test_upstream_retry_backoff_seconds_number() -> None:
    pb = parse(
        """\
        workflow:
          - step: a
            tool: {kind: noop, retry: {max_attempts: 2, retry_on: [timeout], backoff: 5}}
        """
    )
    (task,) = pb.steps["a"].tool
    assert task.rules == (
        Rule(
            when="{{ output.status == 'error' and (output.error.kind in [\"timeout\"]) }}",
            do="retry",
            attempts=2,
            backoff="fixed",
            delay=5,
        ),
    )
