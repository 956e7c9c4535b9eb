"""REFERENCE §12 item 24 (local part): folding the written event log reproduces the live outcome."""

from __future__ import annotations

from noetl.engine.events import Event
from noetl.engine.state import fold

PLAYBOOK = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: replay}
workload: {items: [1, 2, 3]}
workflow:
  - step: start
    tool: {kind: python, code: "result = {'base': 10}"}
    set: {ctx.base: "{{ output.data.base }}"}
    next: {arcs: [{step: each}]}
  - step: each
    loop: {in: "{{ items }}", iterator: i, spec: {mode: parallel, max_in_flight: 2}}
    tool: {kind: python, input: {i: "{{ iter.i }}", b: "{{ base }}"}, code: "result = i + b"}
    next: {arcs: [{step: end}]}
  - step: end
    tool: {kind: python, input: {r: "{{ each.results }}"}, code: "result = sum(r)"}
"""


def test_fold_of_event_log_equals_live_outcome(noetl_run):
    r = noetl_run(PLAYBOOK)
    assert r.status == "COMPLETED", r.stderr
    events = [Event.from_dict(e) for e in r.events]
    state = fold(events)
    again = fold(events)
    assert state == again
    assert state.status == r.outcome["status"]
    assert state.final_result == r.outcome["final_result"] == 36
    assert state.variables == r.outcome["variables"]
    assert {k: state.results[k] for k in r.results} == r.results
    assert state.executed == r.outcome["executed_steps"]
    # every prefix folds without error, and the state only moves forward
    for n in range(1, len(events), 7):
        assert fold(events[:n]).event_count == n
