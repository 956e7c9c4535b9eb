"""DECISIONS 17-19, 24 and REFERENCE §12 items 16-18: loops."""

from __future__ import annotations

HEAD = """
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: loops}
"""


def loop_pb(
    in_expr: str, mode: str = "sequential", extra: str = "", tool: str | None = None, workload: str = "{}"
) -> str:
    tool = tool or '{kind: python, input: {x: "{{ iter.item }}"}, code: "result = x"}'
    return (
        HEAD
        + f"""
    workload: {workload}
    workflow:
      - step: start
        loop:
          in: "{in_expr}"
          iterator: item
          spec: {{mode: {mode}{extra}}}
        tool: {tool}
        next:
          arcs:
            - {{step: after, when: "{{{{ event.name == 'loop.done' }}}}"}}
      - step: after
        tool: {{kind: python, input: {{agg: "{{{{ start }}}}", n: "{{{{ start | length }}}}", data: "{{{{ start.data }}}}"}}, code: "result = {{'agg': agg, 'n': n, 'data': data}}"}}
    """
    )


def test_sequential_loop_in_order_one_at_a_time_and_arcs_once(noetl_run):
    r = noetl_run(loop_pb("{{ ['a', 'b', 'c'] }}"))
    assert r.status == "COMPLETED", r.stderr
    issued = [e["data"]["index"] for e in r.of("command.issued", "start")]
    assert issued == [0, 1, 2]
    # one at a time: each issue comes after the previous iteration completed
    seq = [
        (e["event_type"], e["data"].get("index"))
        for e in r.events
        if e["step"] == "start" and e["event_type"] in ("command.issued", "command.completed")
    ]
    assert seq == [
        ("command.issued", 0),
        ("command.completed", 0),
        ("command.issued", 1),
        ("command.completed", 1),
        ("command.issued", 2),
        ("command.completed", 2),
    ]
    assert len(r.of("loop.done", "start")) == 1
    assert r.outcome["executed_steps"] == ["start", "after"]
    after = r.results["after"]
    assert after["agg"] == {"results": ["a", "b", "c"], "stats": {"total": 3, "succeeded": 3, "failed": 0}}
    assert after["n"] == 3 and after["data"] == ["a", "b", "c"]


def test_parallel_loop_respects_max_in_flight(noetl_run):
    r = noetl_run(
        loop_pb(
            "{{ range(10) | list }}",
            "parallel",
            ", max_in_flight: 2",
            tool='{kind: shell, command: "sleep 0.05; echo {{ iter.item }}"}',
        )
    )
    assert r.status == "COMPLETED", r.stderr
    in_flight = peak = 0
    for e in r.events:
        if e["step"] != "start":
            continue
        if e["event_type"] == "command.issued":
            in_flight += 1
        elif e["event_type"] in ("command.completed", "command.failed"):
            in_flight -= 1
        peak = max(peak, in_flight)
    assert peak == 2
    results = r.results["start"]["results"]
    assert [x["stdout"].strip() for x in results] == [str(i) for i in range(10)]  # item order


def test_parallel_default_runs_concurrently(noetl_run):
    r = noetl_run(loop_pb("{{ [1, 2, 3, 4] }}", "parallel"))
    issued_before_first_done = 0
    for e in r.events:
        if e["event_type"] == "command.completed":
            break
        if e["event_type"] == "command.issued":
            issued_before_first_done += 1
    assert issued_before_first_done == 4


def test_loop_in_map_and_number(noetl_run):
    r = noetl_run(loop_pb("{{ {'a': 1, 'b': 2} }}"))
    assert r.results["start"]["results"] == [{"key": "a", "value": 1}, {"key": "b", "value": 2}]
    r = noetl_run(loop_pb("{{ 3 }}"))
    assert r.results["start"]["results"] == [0, 1, 2]


def test_empty_loop_completes_at_once_and_fires_arcs(noetl_run):
    r = noetl_run(loop_pb("{{ [] }}"))
    assert r.status == "COMPLETED"
    assert r.of("command.issued", "start") == []
    assert r.outcome["executed_steps"] == ["start", "after"]
    assert r.results["start"] == {"results": [], "stats": {"total": 0, "succeeded": 0, "failed": 0}}


def test_loop_in_null_or_string_fails_naming_step(noetl_run):
    for expr in ("{{ none }}", "{{ 'abc' }}", "{{ missing_items }}"):
        r = noetl_run(loop_pb(expr))
        assert r.status == "FAILED", expr
        assert r.outcome["error"]["step"] == "start"
        assert "start" in r.outcome["error"]["message"] or "missing_items" in r.outcome["error"]["message"]


def test_iteration_variables(noetl_run):
    r = noetl_run(
        loop_pb(
            "{{ ['x', 'y'] }}",
            tool='{kind: python, input: {a: "{{ item }}", i: "{{ _index }}", t: "{{ _total }}", j: "{{ iter._index }}", f: "{{ loop.first }}"}, code: "result = [a, i, t, j, f, item]"}',
        )
    )
    assert r.results["start"]["results"] == [["x", 0, 2, 0, True, "x"], ["y", 1, 2, 1, False, "y"]]


def test_fail_fast_stops_dispatch_and_fails_step(noetl_run):
    r = noetl_run(
        loop_pb(
            "{{ [1, 0, 2, 3, 4] }}", tool='{kind: python, input: {x: "{{ item }}"}, code: "result = 10 // x"}'
        )
    )
    assert r.status == "FAILED"
    assert r.outcome["error"]["step"] == "start"
    assert len(r.of("command.issued", "start")) == 2  # sequential: nothing after the failure
    assert "after" not in r.outcome["executed_steps"]


def test_best_effort_runs_every_item(noetl_run):
    r = noetl_run(
        HEAD
        + """
    workflow:
      - step: start
        loop:
          in: "{{ [1, 0, 2] }}"
          iterator: x
          spec: {mode: parallel, policy: {failure: {mode: best_effort}}}
        tool: {kind: python, input: {x: "{{ iter.x }}"}, code: "result = 10 // x"}
        next: {arcs: [{step: report}]}
      - step: report
        tool: {kind: python, input: {s: "{{ start.stats }}"}, code: "result = [s['succeeded'], s['failed'], s['total']]"}
    """
    )
    assert r.status == "COMPLETED", r.stderr
    assert r.results["report"] == [2, 1, 3]
    assert r.results["start"]["results"][0] == 10 and r.results["start"]["results"][2] == 5


def test_loop_with_pipeline_and_iter_set(noetl_run):
    r = noetl_run(
        HEAD
        + """
    workflow:
      - step: start
        loop: {in: "{{ [1, 2] }}", iterator: n, spec: {mode: parallel}}
        tool:
          - name: double
            kind: python
            input: {n: "{{ iter.n }}"}
            code: "result = n * 2"
            set: {iter.doubled: "{{ output.data }}"}
          - name: show
            kind: python
            input: {d: "{{ iter.doubled }}"}
            code: "result = d + 1"
    """
    )
    assert r.status == "COMPLETED", r.stderr
    assert r.results["start"]["results"] == [{"double": 2, "show": 3}, {"double": 4, "show": 5}]
    assert "doubled" not in r.outcome["variables"]  # iter.* stays in the iteration
