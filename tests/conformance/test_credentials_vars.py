"""DECISIONS 22 and 24: credentials never leak; set scopes and variables."""

from __future__ import annotations

import json

SECRET = "s3cr3t-Value-981"

CREDS = f"""
api_token:
  type: bearer
  data: {{token: "{SECRET}"}}
"""


def test_credentials_from_file_and_env_never_leak(noetl_run, http_server):
    url = http_server.route("/secure", body={"ok": True})
    text = f"""
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {{name: creds}}
    workload: {{auth_name: api_token}}
    workflow:
      - step: start
        tool: {{kind: http, url: "{url}", auth: "{{{{ auth_name }}}}"}}
        next: {{arcs: [{{step: leak}}]}}
      - step: leak
        tool:
          kind: python
          auth: api_token
          code: "raise RuntimeError('token is {SECRET}')"
    """
    for args, env in (
        (("--credentials", "creds.yaml"), None),
        ((), {"NOETL_CREDENTIALS_FILE": "creds.yaml"}),
    ):
        r = noetl_run(text, *args, files={"creds.yaml": CREDS}, env=env)
        assert http_server.requests[-1]["headers"].get("Authorization") == f"Bearer {SECRET}"
        assert r.status == "FAILED"
        blob = json.dumps(r.events) + r.stdout + r.stderr
        assert SECRET not in blob
        assert "***" in r.outcome["error"]["message"]


def test_missing_credential_is_clear_error(noetl_run):
    r = noetl_run(
        """
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: creds}
    workflow:
      - step: start
        tool: {kind: http, url: "http://127.0.0.1:1/", auth: nobody}
    """,
        "--credentials",
        "creds.yaml",
        files={"creds.yaml": CREDS},
    )
    assert r.status == "FAILED"
    assert "nobody" in r.outcome["error"]["message"]


def test_set_scopes_ctx_and_bare_are_one_variable(noetl_run):
    r = noetl_run("""
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: vars}
    workload: {total: 0}
    workflow:
      - step: start
        tool: {kind: python, code: "result = {'n': 7}"}
        set: {ctx.total: "{{ output.data.n }}", plain: "{{ start.n * 2 }}"}
        next:
          arcs:
            - step: use
              when: "{{ total == 7 }}"
              set: {ctx.via_arc: "yes"}
            - step: never
              set: {ctx.not_set: "no"}
      - step: use
        tool: {kind: python, input: {a: "{{ ctx.total }}", b: "{{ total }}", c: "{{ workload.total }}", d: "{{ plain }}", e: "{{ via_arc }}"}, code: "result = [a, b, c, d, e]"}
      - step: never
        tool: {kind: noop}
    """)
    assert r.status == "COMPLETED", r.stderr
    assert r.results["use"] == [7, 7, 7, 14, "yes"]
    assert "not_set" not in r.outcome["variables"]
    updates = r.of("ctx.updated")
    assert [u["data"]["values"] for u in updates] == [{"total": 7, "plain": 14}, {"via_arc": "yes"}]


def test_concurrent_ctx_writes_last_event_wins(noetl_run):
    r = noetl_run("""
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: race}
    workflow:
      - step: start
        loop: {in: "{{ range(6) | list }}", iterator: i, spec: {mode: parallel}}
        tool:
          kind: python
          input: {i: "{{ iter.i }}"}
          code: "result = i"
          set: {ctx.last: "{{ output.data }}"}
    """)
    assert r.status == "COMPLETED", r.stderr
    writes = [e["data"]["context_updates"]["last"] for e in r.of("call.done", "start")]
    completions = [e["command_id"] for e in r.of("command.completed", "start")]
    by_cmd = {e["command_id"]: e["data"]["context_updates"]["last"] for e in r.of("call.done", "start")}
    assert r.outcome["variables"]["last"] == by_cmd[completions[-1]]
    assert sorted(writes) == list(range(6))
