"""DECISIONS 20-21 and REFERENCE §12 item 19: sub-playbooks and workbook tasks."""

from __future__ import annotations

CHILD = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: child, path: lib/child}
workload: {n: 1}
workflow:
  - step: start
    tool: {kind: python, input: {n: "{{ n }}"}, code: "result = {'doubled': n * 2}"}
    next: {arcs: [{step: end}]}
  - step: end
    tool: {kind: python, input: {d: "{{ start.doubled }}"}, code: "result = {'final': d}"}
"""

FAILING_CHILD = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: bad_child, path: lib/bad}
workflow:
  - step: start
    tool: {kind: python, code: "raise RuntimeError('child broke')"}
"""


def parent(tool: str) -> str:
    return f"""
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {{name: parent}}
    workflow:
      - step: start
        tool: {tool}
    """


def test_child_final_result_and_parent_execution_id(noetl_run):
    r = noetl_run(parent("{kind: playbook, path: lib/child, input: {n: 21}}"), files={"child.yaml": CHILD})
    assert r.status == "COMPLETED", r.stderr
    assert r.results["start"] == {"final": 42}
    parent_id = r.outcome["execution_id"]
    child_inits = [
        e for e in r.events if e["event_type"] == "playbook.initialized" and e["execution_id"] != parent_id
    ]
    assert len(child_inits) == 1
    assert child_inits[0]["data"]["parent_execution_id"] == parent_id


def test_return_step_chooses_child_step(noetl_run):
    r = noetl_run(
        parent("{kind: playbook, path: lib/child, input: {n: 5}, return_step: start}"),
        files={"child.yaml": CHILD},
    )
    assert r.results["start"] == {"doubled": 10}


def test_async_child_returns_id_at_once(noetl_run):
    r = noetl_run(parent("{kind: playbook, path: child, async: true}"), files={"child.yaml": CHILD})
    assert r.status == "COMPLETED", r.stderr
    res = r.results["start"]
    assert set(res) == {"execution_id", "status"} and res["execution_id"].isdigit()


def test_failed_child_is_error_of_calling_task(noetl_run):
    r = noetl_run(parent("{kind: playbook, path: lib/bad}"), files={"bad.yaml": FAILING_CHILD})
    assert r.status == "FAILED"
    assert r.outcome["error"]["step"] == "start" and "child broke" in r.outcome["error"]["message"]


def test_catalog_dir_and_missing_child(noetl_run, tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "c.yaml").write_text(CHILD)
    r = noetl_run(parent("{kind: playbook, path: lib/child}"), "--catalog", str(lib))
    assert r.status == "COMPLETED", r.stderr
    r = noetl_run(parent("{kind: playbook, path: lib/nowhere}"))
    assert r.status == "FAILED" and "lib/nowhere" in r.outcome["error"]["message"]


def test_workbook_resolution_and_missing_name(noetl_run):
    r = noetl_run("""
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: wb}
    workload: {order_amount: 150}
    workbook:
      - name: classify
        tool:
          kind: python
          input: {amount: 0}
          code: "result = {'tier': 'high' if amount > 100 else 'low'}"
    workflow:
      - step: start
        tool: {kind: workbook, name: classify, input: {amount: "{{ order_amount }}"}}
    """)
    assert r.status == "COMPLETED", r.stderr
    assert r.results["start"] == {"tier": "high"}
    r = noetl_run("""
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: wb}
    workflow:
      - step: start
        tool: {kind: workbook, name: nothere}
    """)
    assert r.code == 2 and "nothere" in r.stderr
