"""DECISIONS 12-14 and REFERENCE §12 items 11-14: task policies, retries, jumps, the output envelope."""

from __future__ import annotations

HEAD = """
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: policies}
"""


def test_retry_attempts_is_total_runs_then_fails(noetl_run, http_server):
    url = http_server.route("/flaky", status=503, body={"e": "down"})
    r = noetl_run(
        HEAD
        + f"""
    workflow:
      - step: start
        tool:
          kind: http
          url: "{url}"
          spec:
            policy:
              rules:
                - when: "{{{{ output.status == 'error' and output.http.status in [429, 503] }}}}"
                  then: {{do: retry, attempts: 3, delay: 0.01}}
    """
    )
    assert http_server.count("/flaky") == 3
    assert r.status == "FAILED" and r.outcome["error"]["step"] == "start"
    assert "503" in r.outcome["error"]["message"]


def test_retry_until_success_and_attempt_visible(noetl_run, http_server):
    url = http_server.route("/eventually", sequence=[(503, {}), (503, {}), (200, {"ok": True})])
    r = noetl_run(
        HEAD
        + f"""
    workflow:
      - step: start
        tool:
          kind: http
          url: "{url}?attempt={{{{ _attempt }}}}"
          spec:
            policy:
              rules:
                - when: "{{{{ output.status == 'error' }}}}"
                  then: {{do: retry, attempts: 5, backoff: exponential, delay: 0.01}}
    """
    )
    assert r.status == "COMPLETED", r.stderr
    assert http_server.count("/eventually") == 3
    paths = [q["path"] for q in http_server.requests]
    assert paths == ["/eventually?attempt=1", "/eventually?attempt=2", "/eventually?attempt=3"]


def test_no_policy_error_fails_and_continue_rule_keeps_error_visible(noetl_run):
    failing = """
    workflow:
      - step: start
        tool:
          kind: python
          code: "raise KeyError('k')"
          {policy}
        next:
          arcs:
            - {{step: saw_error, when: "{{{{ output.status == 'error' }}}}"}}
            - {{step: end}}
      - step: saw_error
        tool: {{kind: python, input: {{kind: "{{{{ start.error.kind if start.error is defined else 'none' }}}}"}}, code: "result = kind"}}
      - step: end
        tool: {{kind: noop}}
    """
    r = noetl_run(HEAD + failing.format(policy=""))
    assert r.status == "COMPLETED"  # the error arc handled it
    assert r.outcome["executed_steps"] == ["start", "saw_error"]
    policy = "spec: {policy: {rules: [{when: \"{{ output.status == 'error' }}\", then: {do: continue}}]}}"
    r = noetl_run(HEAD + failing.format(policy=policy))
    assert r.status == "COMPLETED", r.stderr
    assert r.outcome["executed_steps"] == ["start", "saw_error"]
    completed = r.of("command.completed", "start")
    assert completed, "a continued error completes the step"
    assert r.results["saw_error"] == "python"


def test_policy_rules_first_match_wins_and_else(noetl_run):
    r = noetl_run(
        HEAD
        + """
    workflow:
      - step: start
        tool:
          kind: python
          code: "raise ValueError('x')"
          spec:
            policy:
              rules:
                - when: "{{ output.status == 'error' }}"
                  then: {do: continue}
                - when: "{{ true }}"
                  then: {do: fail}
    """
    )
    assert r.status == "COMPLETED"
    r = noetl_run(
        HEAD
        + """
    workflow:
      - step: start
        tool:
          kind: python
          code: "result = 1"
          spec:
            policy:
              rules:
                - when: "{{ output.data == 2 }}"
                  then: {do: continue}
                - else:
                    then: {do: fail}
    """
    )
    assert r.status == "FAILED"
    r = noetl_run(
        HEAD
        + """
    workflow:
      - step: start
        tool:
          kind: python
          code: "result = 1"
          spec:
            policy:
              rules:
                - when: "{{ output.data == 2 }}"
                  then: {do: continue}
                - else: {do: fail}
    """
    )
    assert r.status == "FAILED"  # `else` without a then wrapper is accepted


def test_pipeline_jump_with_iter_set_until_break(noetl_run, http_server):
    http_server.route(
        "/p",
        sequence=[
            (200, {"page": 1, "has_more": True}),
            (200, {"page": 2, "has_more": True}),
            (200, {"page": 3, "has_more": False}),
        ],
    )
    r = noetl_run(
        HEAD
        + f"""
    workflow:
      - step: start
        tool:
          - name: init
            kind: noop
            set: {{iter.page: 1}}
          - name: fetch
            kind: http
            url: "{http_server.url}/p?page={{{{ iter.page }}}}"
          - name: check
            kind: noop
            spec:
              policy:
                rules:
                  - when: "{{{{ fetch.data.has_more }}}}"
                    then: {{do: jump, to: fetch, set: {{iter.page: "{{{{ iter.page + 1 }}}}"}}}}
                  - else:
                      then: {{do: break}}
    """
    )
    assert r.status == "COMPLETED", r.stderr
    assert [q["path"] for q in http_server.requests] == ["/p?page=1", "/p?page=2", "/p?page=3"]
    assert r.results["start"]["fetch"]["data"]["page"] == 3


def test_pipeline_fail_action_and_policy_set_ctx(noetl_run):
    r = noetl_run(
        HEAD
        + """
    workflow:
      - step: start
        tool:
          - name: a
            kind: python
            code: "result = 5"
            spec:
              policy:
                rules:
                  - when: "{{ output.data > 3 }}"
                    then: {do: fail, set: {ctx.seen: "{{ output.data }}"}}
          - name: b
            kind: python
            code: "result = 'not reached'"
    """
    )
    assert r.status == "FAILED"
    assert r.outcome["variables"].get("seen") == 5
    assert "b" not in (r.results.get("start") or {})


def test_inputs_rerendered_per_attempt(noetl_run):
    r = noetl_run(
        HEAD
        + """
    workflow:
      - step: start
        tool:
          kind: python
          input: {a: "{{ _attempt }}"}
          code: |
            if a < 3:
                raise RuntimeError(f"attempt {a}")
            result = a
          spec:
            policy:
              rules:
                - when: "{{ output.status == 'error' }}"
                  then: {do: retry, attempts: 4}
    """
    )
    assert r.status == "COMPLETED", r.stderr
    assert r.results["start"] == 3
