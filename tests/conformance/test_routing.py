"""DECISIONS 3-6, 15, 16 and REFERENCE §12 items 2, 6-10: start, routing, fan-in, completion."""

from __future__ import annotations

HEAD = """
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: routing}
"""


def pb(body: str, head: str = HEAD) -> str:
    return head + body


def test_entry_step_precedence(noetl_run):
    body = """
    workflow:
      - step: first
        tool: {kind: python, code: "result = 'first'"}
      - step: start
        tool: {kind: python, code: "result = 'start'"}
      - step: chosen
        tool: {kind: python, code: "result = 'chosen'"}
    """
    r = noetl_run(pb(body.rstrip() + "\n    executor: {spec: {entry_step: chosen}}\n"))
    assert r.outcome["executed_steps"] == ["chosen"]
    r = noetl_run(pb(body))
    assert r.outcome["executed_steps"] == ["start"]
    r = noetl_run(pb(body.replace("step: start", "step: second")))
    assert r.outcome["executed_steps"] == ["first"]
    first_issue = r.of("command.issued")[0]
    assert r.names()[0] == "playbook.initialized" and first_issue["step"] == "first"


def test_arc_to_end_without_end_step_ends_branch(noetl_run):
    r = noetl_run(
        pb("""
    workflow:
      - step: start
        tool: {kind: python, code: "result = 1"}
        next: {arcs: [{step: end}]}
    """)
    )
    assert r.status == "COMPLETED" and r.outcome["executed_steps"] == ["start"]
    assert r.outcome["final_result"] == 1


def test_final_result_rules(noetl_run):
    body = """
    workflow:
      - step: start
        tool: {kind: python, code: "result = 'a'"}
        next: {arcs: [{step: middle}]}
      - step: middle
        tool: {kind: python, code: "result = 'b'"}
        next: {arcs: [{step: end}]}
      - step: end
        tool: {kind: python, code: "result = 'z'"}
    """
    assert noetl_run(pb(body)).outcome["final_result"] == "z"
    assert (
        noetl_run(pb(body.rstrip() + "\n    executor: {spec: {final_step: middle}}\n")).outcome[
            "final_result"
        ]
        == "b"
    )
    no_end = body.replace(
        "step: end\n        tool: {kind: python, code: \"result = 'z'\"}",
        "step: other\n        tool: {kind: python, code: \"result = 'z'\"}",
    )
    r = noetl_run(pb(no_end))
    assert r.outcome["executed_steps"] == ["start", "middle"]
    assert r.outcome["final_result"] == "b"  # last completed step


def test_no_next_is_error(noetl_run):
    body = """
    workflow:
      - step: start
        tool: {kind: python, code: "result = {'n': 1}"}
        next:
          arcs:
            - {step: end, when: "{{ start.n > 5 }}"}
      - step: end
        tool: {kind: noop}
    """
    r = noetl_run(pb(body))
    assert r.status == "COMPLETED" and r.outcome["executed_steps"] == ["start"]
    r = noetl_run(pb(body.rstrip() + "\n    executor: {spec: {no_next_is_error: true}}\n"))
    assert r.status == "FAILED" and r.code == 1
    assert r.outcome["error"]["step"] == "start"


def test_exclusive_first_match_only_and_others_skipped(noetl_run):
    r = noetl_run(
        pb("""
    workload: {amount: 5000}
    workflow:
      - step: start
        tool: {kind: noop}
        next:
          spec: {mode: exclusive}
          arcs:
            - {step: big, when: "{{ amount > 1000 }}"}
            - {step: medium, when: "{{ amount > 100 }}"}
            - {step: small}
      - step: big
        tool: {kind: python, code: "result = 'big'"}
      - step: medium
        tool: {kind: python, code: "result = 'medium'"}
      - step: small
        tool: {kind: python, code: "result = 'small'"}
    """)
    )
    assert r.outcome["executed_steps"] == ["start", "big"]
    skipped = {e["step"] for e in r.of("step.skipped")}
    assert skipped == {"medium", "small"}


def test_inclusive_fan_out_and_fan_in_barrier(noetl_run):
    r = noetl_run(
        pb("""
    workflow:
      - step: start
        tool: {kind: noop}
        next:
          spec: {mode: inclusive}
          arcs:
            - {step: left, when: "{{ true }}"}
            - {step: right, when: "{{ true }}"}
            - {step: never, when: "{{ false }}"}
      - step: left
        tool: {kind: shell, command: "sleep 0.3; echo L"}
        next: {arcs: [{step: join}]}
      - step: right
        tool: {kind: python, code: "result = 'R'"}
        next: {arcs: [{step: join}]}
      - step: never
        tool: {kind: noop}
        next: {arcs: [{step: join}]}
      - step: join
        tool: {kind: python, input: {l: "{{ left.stdout }}", r: "{{ right }}"}, code: "result = l.strip() + r"}
    """)
    )
    assert r.status == "COMPLETED", r.stderr
    steps = r.outcome["executed_steps"]
    assert steps.count("join") == 1 and steps[-1] == "join"
    assert set(steps) == {"start", "left", "right", "join"}
    assert r.results["join"] == "LR"
    # both branches were in flight together: right started before left finished
    names = [(e["event_type"], e["step"]) for e in r.events]
    assert names.index(("command.issued", "right")) < names.index(("command.completed", "left"))
    assert len(r.of("step.enter", "join")) == 1


def test_arc_without_when_always_fires_and_undefined_when_does_not(noetl_run):
    r = noetl_run(
        pb("""
    workflow:
      - step: start
        tool: {kind: noop}
        next:
          arcs:
            - {step: a, when: "{{ no_such_var.field == 1 }}"}
            - {step: b}
      - step: a
        tool: {kind: noop}
      - step: b
        tool: {kind: python, code: "result = 'b ran'"}
    """)
    )
    assert r.status == "COMPLETED"
    assert r.outcome["executed_steps"] == ["start", "b"]
    warnings = r.of("template.warning")
    assert warnings and "no_such_var" in warnings[0]["data"]["message"]


GUARDED = """
    workload: {enabled: false}
    workflow:
      - step: start
        tool: {kind: noop}
        next: {arcs: [{step: guarded}]}
      - step: guarded
        spec:
          policy:
            admit:
              rules:
                - when: "{{ enabled }}"
                  then: {allow: true}
                - else: {then: {allow: false}}
        tool: {kind: python, code: "result = 'ran'"}
        next: {arcs: [{step: after}]}
      - step: after
        tool: {kind: python, code: "result = 'after'"}
"""


def test_admission_false_skips_and_follows_own_arcs(noetl_run):
    r = noetl_run(pb(GUARDED))
    assert r.status == "COMPLETED"
    assert r.outcome["executed_steps"] == ["start", "after"]
    assert [e["step"] for e in r.of("step.skipped")] == ["guarded"]
    r2 = noetl_run(pb(GUARDED), "--set", "enabled=true")
    assert r2.outcome["executed_steps"] == ["start", "guarded", "after"]


def test_step_without_next_completes_execution(noetl_run):
    r = noetl_run(
        pb("""
    workflow:
      - step: start
        tool: {kind: noop}
    """)
    )
    assert r.names()[-1] == "playbook.completed" and r.code == 0


def test_failed_step_routes_only_error_arcs_and_counts_as_handled(noetl_run):
    r = noetl_run(
        pb("""
    workflow:
      - step: start
        tool: {kind: python, code: "raise RuntimeError('kaput')"}
        next:
          arcs:
            - {step: happy}
            - {step: recover, when: "{{ output.status == 'error' and event.name == 'call.error' }}"}
      - step: happy
        tool: {kind: noop}
      - step: recover
        tool: {kind: python, input: {msg: "{{ output.error.message if output is defined else '' }}"}, code: "result = 'recovered'"}
    """)
    )
    assert r.status == "COMPLETED", r.stderr
    assert r.outcome["executed_steps"] == ["start", "recover"]
    assert r.outcome["final_result"] == "recovered"


def test_failed_step_arc_aliases_step_failed(noetl_run):
    r = noetl_run(
        pb("""
    workflow:
      - step: start
        tool: {kind: python, code: "raise RuntimeError('kaput')"}
        next:
          arcs:
            - {step: recover, when: "{{ event.name == 'step.failed' }}"}
      - step: recover
        tool: {kind: noop}
    """)
    )
    assert r.status == "COMPLETED" and r.outcome["executed_steps"] == ["start", "recover"]


def test_unhandled_failure_fails_after_in_flight_work_drains(noetl_run):
    r = noetl_run(
        pb("""
    workflow:
      - step: start
        tool: {kind: noop}
        next:
          spec: {mode: inclusive}
          arcs: [{step: bad}, {step: slow}]
      - step: bad
        tool: {kind: python, code: "raise ValueError('nope')"}
        next: {arcs: [{step: after_bad}]}
      - step: slow
        tool: {kind: shell, command: "sleep 0.5; echo done"}
        next: {arcs: [{step: after_slow}]}
      - step: after_bad
        tool: {kind: noop}
      - step: after_slow
        tool: {kind: noop}
    """)
    )
    assert r.status == "FAILED"
    assert r.outcome["error"]["step"] == "bad" and "nope" in r.outcome["error"]["message"]
    steps = r.outcome["executed_steps"]
    assert "slow" in steps  # drained, not abandoned
    assert "after_slow" not in steps and "after_bad" not in steps  # nothing new dispatched
    names = [(e["event_type"], e["step"]) for e in r.events]
    assert names.index(("command.completed", "slow")) < names.index(("playbook.failed", None))


def test_event_name_in_arcs_success_aliases(noetl_run):
    r = noetl_run(
        pb("""
    workflow:
      - step: start
        tool: {kind: noop}
        next:
          spec: {mode: inclusive}
          arcs:
            - {step: a, when: "{{ event.name == 'call.done' }}"}
            - {step: b, when: "{{ event.name == 'step.done' }}"}
            - {step: c, when: "{{ event.name == 'step.exit' }}"}
            - {step: d, when: "{{ event.name == 'call.error' }}"}
            - {step: e, when: "{{ event.name == 'loop.done' }}"}
      - {step: a, tool: {kind: noop}}
      - {step: b, tool: {kind: noop}}
      - {step: c, tool: {kind: noop}}
      - {step: d, tool: {kind: noop}}
      - {step: e, tool: {kind: noop}}
    """)
    )
    assert sorted(r.outcome["executed_steps"][1:]) == ["a", "b", "c"]


def test_workflow_loop_back_edge(noetl_run):
    r = noetl_run(
        pb("""
    workload: {n: 0}
    workflow:
      - step: start
        tool: {kind: noop}
        next: {arcs: [{step: bump}]}
      - step: bump
        tool: {kind: python, input: {n: "{{ n }}"}, code: "result = {'n': n + 1}"}
        set: {ctx.n: "{{ output.data.n }}"}
        next:
          arcs:
            - {step: bump, when: "{{ n < 3 }}"}
            - {step: end}
      - step: end
        tool: {kind: python, input: {n: "{{ n }}"}, code: "result = n"}
    """)
    )
    assert r.status == "COMPLETED", r.stderr
    assert r.outcome["final_result"] == 3
    assert r.outcome["executed_steps"] == ["start", "bump", "bump", "bump", "end"]
