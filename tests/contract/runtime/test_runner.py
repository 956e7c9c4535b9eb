"""The task runner with real tools (noop, shell, python, http): results, policies, scopes, secrets.

Each test parses a small playbook, builds the render context the engine would hand over and runs
one command with :func:`noetl.runtime.runner.run_command`.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from noetl.dsl import templates
from noetl.dsl.model import Playbook, Rule, Step, Task
from noetl.dsl.parser import parse
from noetl.runtime.credentials import CredentialStore, FileCredentials, MemoryCredentials, NoCredentials
from noetl.runtime.runner import Outcome, run_command
from noetl.tools.base import Services
from noetl.tools.pypool import PythonPool

SECRET = "tok-Secret-7731"

HEAD = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: runner}
"""


def playbook(body: str) -> Playbook:
    return parse(HEAD + textwrap.dedent(body))


def context(variables: Mapping[str, Any] | None = None, results: Mapping[str, Any] | None = None) -> dict:
    """The context the engine builds: variables bare and under workload/ctx/vars, step results as views."""
    values = dict(variables or {})
    ctx: dict[str, Any] = {**values, "workload": values, "ctx": values, "vars": values}
    ctx.update({name: templates.result_view(result) for name, result in (results or {}).items()})
    ctx["execution_id"] = "42"
    return ctx


@pytest.fixture
async def services() -> AsyncIterator[Services]:
    pool = PythonPool(size=2)
    pool.start()
    services = Services(python_pool=pool)
    yield services
    await pool.close()
    for client in services.extras.values():
        await client.aclose()


@pytest.fixture
def run(services: Services):
    async def run(
        pb: Playbook,
        step: str = "start",
        ctx: Mapping[str, Any] | None = None,
        credentials: CredentialStore | None = None,
        **kw: Any,
    ) -> Outcome:
        return await run_command(
            pb,
            step,
            context() if ctx is None else ctx,
            execution_id="42",
            services=services,
            credentials=credentials or NoCredentials(),
            **kw,
        )

    return run


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


# ---- results and rendering ---------------------------------------------------------------------------


async def test_single_task_result(run):
    out = await run(
        playbook("workflow:\n  - step: start\n    tool: {kind: python, code: \"result = {'n': 1}\"}\n")
    )
    assert out == Outcome("ok", {"n": 1}, None, {}, 1, out.duration_ms, None)


async def test_pipeline_result_map_labels_and_prev(run):
    pb = playbook("""
        workflow:
          - step: start
            tool:
              - name: a
                kind: python
                code: "result = {'n': 2}"
              - kind: noop
              - name: c
                kind: python
                input: {x: "{{ a.n }}", via_data: "{{ a.data.n }}", prev: "{{ _prev }}", task: "{{ _task }}"}
                code: "result = [x, via_data, prev, task]"
    """)
    out = await run(pb)
    assert out.status == "ok" and out.attempts == 3
    # DECISIONS 8: map results' fields are merged on top in task order (a list result adds none)
    assert out.result == {"a": {"n": 2}, "task_1": {}, "c": [2, 2, {}, "c"], "n": 2}


async def test_input_rendered_from_variables_and_step_results(run, tmp_path):
    pb = playbook("""
        workflow:
          - step: start
            tool:
              - name: py
                kind: python
                input: {who: "{{ name }}", same: "{{ workload.name }}", rows: "{{ fetch.data.rows }}", n: "{{ fetch.rows | length }}"}
                code: "result = [who, same, rows, n]"
              - name: sh
                kind: shell
                input: {greeting: "hello {{ name }}"}
                command: "echo '{{ greeting }}' from {{ input.greeting | length }} chars"
    """)
    out = await run(pb, ctx=context({"name": "ada"}, {"fetch": {"rows": [1, 2]}}))
    assert out.status == "ok", out.error
    assert out.result["py"] == ["ada", "ada", [1, 2], 2]
    assert out.result["sh"]["stdout"] == "hello ada from 9 chars\n"


async def test_loop_iteration_value_is_injected_into_input(run):
    pb = playbook("""
        workflow:
          - step: start
            loop: {in: "{{ [1, 2] }}", iterator: item}
            tool: {kind: python, code: "result = item * 10"}
    """)
    ctx = context()
    ctx.update(iter={"item": 4, "_index": 1}, item=4, _index=1)
    out = await run(pb, ctx=ctx)
    assert out.result == 40


async def test_undefined_variable_is_a_template_error_naming_it_and_the_tool_does_not_run(run, tmp_path):
    marker = tmp_path / "ran"
    pb = playbook(f"""
        workflow:
          - step: start
            tool:
              kind: shell
              input: {{x: "{{{{ nope_var.field }}}}"}}
              command: "touch {marker}"
    """)
    out = await run(pb)
    assert out.status == "error" and out.failed_task == "start"
    assert out.error["kind"] == "template" and out.error["variable"] == "nope_var"
    assert "nope_var" in out.error["message"] and "input 'x'" in out.error["message"]
    assert not marker.exists()


async def test_undefined_field_in_tool_config_names_the_field(run):
    pb = playbook("""
        workflow:
          - step: start
            tool:
              - name: only
                kind: shell
                command: "echo {{ missing_thing }}"
    """)
    out = await run(pb)
    assert out.error["kind"] == "template" and out.error["variable"] == "missing_thing"
    assert out.error["message"].startswith("task 'only' field 'command':")


async def test_context_is_not_mutated(run):
    pb = playbook("""
        workflow:
          - step: start
            tool: {kind: noop, set: {ctx.x: 1, iter.y: 2}}
    """)
    ctx = context({"a": 1})
    ctx["iter"] = {"i": 0}
    before = json.dumps({k: v for k, v in ctx.items() if k != "fetch"}, sort_keys=True)
    out = await run(pb, ctx=ctx)
    assert out.context_updates == {"x": 1}
    assert json.dumps(ctx, sort_keys=True) == before


# ---- retry ---------------------------------------------------------------------------------------------


async def test_retry_attempts_is_total_runs_then_the_last_error_fails(run, tmp_path):
    log = tmp_path / "runs"
    pb = playbook(f"""
        workflow:
          - step: start
            tool:
              kind: shell
              command: "echo {{{{ _attempt }}}} >> {log}; exit 3"
              spec:
                policy:
                  rules:
                    - when: "{{{{ output.status == 'error' and output.shell.exit_code == 3 }}}}"
                      then: {{do: retry, attempts: 3, delay: 0}}
    """)
    out = await run(pb)
    assert lines(log) == ["1", "2", "3"]
    assert out.status == "error" and out.attempts == 3 and out.failed_task == "start"
    assert out.error["kind"] == "shell" and out.error["shell"] == {"exit_code": 3}
    assert out.result["exit_code"] == 3  # a failed shell task leaves its output as the result


async def test_retry_succeeds_on_second_attempt_with_inputs_rendered_again(run):
    pb = playbook("""
        workflow:
          - step: start
            tool:
              kind: python
              input: {a: "{{ _attempt }}"}
              code: |
                if a < 2:
                    raise RuntimeError(f"attempt {a}")
                result = {'attempt': a}
              spec:
                policy:
                  rules:
                    - when: "{{ output.status == 'error' }}"
                      then: {do: retry, attempts: 5, backoff: exponential, delay: 0.001}
    """)
    out = await run(pb)
    assert out.status == "ok" and out.error is None
    assert out.result == {"attempt": 2} and out.attempts == 2


async def test_retry_exhausted_after_successful_runs_is_a_policy_error(run):
    pb = playbook("""
        workflow:
          - step: start
            tool:
              kind: noop
              spec: {policy: {rules: [{when: "{{ output.status == 'ok' }}", then: {do: retry, attempts: 2}}]}}
    """)
    out = await run(pb)
    assert out.attempts == 2 and out.status == "error"
    assert out.error["kind"] == "policy" and "retry attempts exhausted" in out.error["message"]


# ---- jump, break, fail, continue ------------------------------------------------------------------------


async def test_jump_with_iter_set_until_break(run, tmp_path):
    log = tmp_path / "pages"
    pb = playbook(f"""
        workflow:
          - step: start
            tool:
              - name: init
                kind: noop
                set: {{iter.page: 1}}
              - name: fetch
                kind: shell
                command: "echo {{{{ iter.page }}}} >> {log}; echo {{{{ iter.page }}}}"
              - name: check
                kind: noop
                spec:
                  policy:
                    rules:
                      - when: "{{{{ fetch.stdout | int < 3 }}}}"
                        then: {{do: jump, to: fetch, set: {{iter.page: "{{{{ iter.page + 1 }}}}"}}}}
                      - else:
                          then: {{do: break}}
              - name: never
                kind: shell
                command: "echo never >> {log}"
    """)
    out = await run(pb)
    assert out.status == "ok", out.error
    assert lines(log) == ["1", "2", "3"]
    assert out.attempts == 7  # init + 3 x (fetch, check)
    assert out.result["fetch"]["stdout"] == "3\n" and "never" not in out.result
    assert out.context_updates == {}  # iter.* stays in the iteration


async def test_fail_action_with_policy_set_ctx(run):
    pb = playbook("""
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
    """)
    out = await run(pb)
    assert out.status == "error" and out.failed_task == "a"
    assert out.error == {"kind": "policy", "message": "task 'a' failed by policy rule", "retryable": False}
    assert out.context_updates == {"seen": 5}
    assert out.result == {"a": 5}


async def test_continue_on_error_succeeds_with_the_error_visible(run):
    pb = playbook("""
        workflow:
          - step: start
            tool:
              - name: boom
                kind: python
                code: "raise KeyError('k')"
                spec: {policy: {rules: [{when: "{{ output.status == 'error' }}", then: {do: continue}}]}}
              - name: after
                kind: python
                input: {k: "{{ boom.error.kind }}", s: "{{ _prev.status }}"}
                code: "result = [k, s]"
    """)
    out = await run(pb)
    assert out.status == "ok" and out.failed_task is None
    assert out.error["kind"] == "python" and out.error["py"]["exception"] == "KeyError"
    assert out.result["boom"]["status"] == "error" and out.result["after"] == ["python", "error"]


async def test_continue_on_shell_error_keeps_its_output_as_result(run):
    pb = playbook("""
        workflow:
          - step: start
            tool:
              kind: shell
              command: "echo partial; exit 1"
              spec: {policy: {rules: [{when: "{{ output.status == 'error' }}", then: {do: continue}}]}}
    """)
    out = await run(pb)
    assert out.status == "ok" and out.error["kind"] == "shell"
    assert out.result == {"stdout": "partial\n", "stderr": "", "exit_code": 1}


async def test_error_with_no_matching_rule_fails(run):
    pb = playbook("""
        workflow:
          - step: start
            tool:
              kind: python
              code: "raise ValueError('bad value')"
              spec: {policy: {rules: [{when: "{{ output.status == 'ok' }}", then: {do: continue}}]}}
    """)
    out = await run(pb)
    assert out.status == "error" and out.error["kind"] == "python"
    assert "bad value" in out.error["message"]


async def test_else_rule_and_else_without_then_wrapper(run):
    for rule in ("- else: {then: {do: fail}}", "- else: {do: fail}"):
        pb = playbook(f"""
            workflow:
              - step: start
                tool:
                  kind: python
                  code: "result = 1"
                  spec:
                    policy:
                      rules:
                        - when: "{{{{ output.data == 2 }}}}"
                          then: {{do: continue}}
                        {rule}
        """)
        out = await run(pb)
        assert out.status == "error" and out.error["kind"] == "policy", rule


async def test_rules_tried_in_order_and_unrenderable_when_is_false(run):
    pb = playbook("""
        workflow:
          - step: start
            tool:
              kind: noop
              spec:
                policy:
                  rules:
                    - when: "{{ output.http.status == 200 }}"
                      then: {do: fail}
                    - when: "{{ output.status == 'ok' }}"
                      then: {do: continue, set: {picked: second}}
                    - when: "{{ true }}"
                      then: {do: continue, set: {picked: third}}
    """)
    out = await run(pb)
    assert out.status == "ok" and out.context_updates == {"picked": "second"}


async def test_rule_built_directly_else_break(run):
    task = Task(
        kind="python",
        name="start",
        config={"code": "raise ValueError('x')"},
        rules=(Rule(when=None, do="break"),),
    )
    pb = Playbook(name="direct", path="direct", workflow=(Step(name="start", tool=(task,)),))
    out = await run(pb)
    assert out.status == "ok" and out.error["kind"] == "python"


async def test_jump_loop_stops_at_the_task_run_cap(run):
    pb = playbook("""
        workflow:
          - step: start
            tool:
              - name: spin
                kind: noop
                spec: {policy: {rules: [{when: "{{ true }}", then: {do: jump, to: spin}}]}}
    """)
    out = await run(pb, max_task_runs=25)
    assert out.status == "error" and out.attempts == 25
    assert out.error["kind"] == "policy" and "25 task runs" in out.error["message"]


async def test_timeout_is_a_retryable_timeout_error(run):
    pb = playbook("""
        workflow:
          - step: start
            tool: {kind: shell, command: "sleep 5", spec: {timeout: 0.3}}
    """)
    out = await run(pb)
    assert out.status == "error"
    assert out.error["kind"] == "timeout" and out.error["retryable"] is True


async def test_unknown_step_is_an_error_outcome(run):
    out = await run(playbook("workflow:\n  - step: start\n    tool: {kind: noop}\n"), step="nope")
    assert out.status == "error" and "nope" in out.error["message"]


async def test_cancellation_propagates_and_stops_the_tool(services):
    pb = playbook("""
        workflow:
          - step: start
            tool: {kind: shell, command: "sleep 30"}
    """)
    task = asyncio.ensure_future(
        run_command(pb, "start", context(), execution_id="1", services=services, credentials=NoCredentials())
    )
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)


# ---- set scopes ----------------------------------------------------------------------------------------


async def test_set_scopes_and_context_updates(run):
    pb = playbook("""
        workflow:
          - step: start
            tool:
              - name: a
                kind: python
                code: "result = 7"
                set: {ctx.total: "{{ output.data }}", iter.mark: x, plain: "{{ output.data * 2 }}", step.s: 3}
              - name: b
                kind: python
                input:
                  t: "{{ total }}"
                  c: "{{ ctx.total }}"
                  w: "{{ workload.total }}"
                  v: "{{ vars.plain }}"
                  m: "{{ iter.mark }}"
                  p: "{{ plain }}"
                  s: "{{ s }}"
                  kept: "{{ other }}"
                code: "result = [t, c, w, v, m, p, s, kept]"
    """)
    out = await run(pb, ctx=context({"total": 0, "other": "o"}))
    assert out.status == "ok", out.error
    assert out.result["b"] == [7, 7, 7, 14, "x", 14, 3, "o"]
    assert out.context_updates == {"total": 7, "plain": 14, "s": 3}


async def test_task_set_is_skipped_after_an_error(run):
    pb = playbook("""
        workflow:
          - step: start
            tool:
              kind: python
              code: "raise ValueError('no')"
              set: {ctx.x: 1}
              spec: {policy: {rules: [{when: "{{ true }}", then: {do: continue}}]}}
    """)
    out = await run(pb)
    assert out.status == "ok" and out.context_updates == {}


# ---- credentials, keychain, redaction --------------------------------------------------------------------


@pytest.fixture
def http_echo() -> Iterator[str]:
    """A local HTTP server answering every request with its Authorization header (or 404 for /missing)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            status = 404 if self.path == "/missing" else 200
            body = json.dumps({"authorization": self.headers.get("Authorization")}).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def creds_file(tmp_path: Path) -> FileCredentials:
    path = tmp_path / "creds.yaml"
    path.write_text(
        f"api:\n  type: bearer\n  data: {{token: {SECRET}}}\n"
        "pg:\n  type: postgres\n  data: {db_host: localhost, db_password: pw-Hidden-1}\n"
    )
    return FileCredentials(path)


async def test_auth_credential_reaches_the_tool_and_is_masked_in_the_result(run, http_echo, creds_file):
    pb = playbook(f"""
        workload: {{auth_name: api}}
        workflow:
          - step: start
            tool:
              kind: http
              url: "{http_echo}/echo"
              auth: "{{{{ auth_name }}}}"
              set: {{ctx.seen: "{{{{ output.data.data.authorization }}}}", ctx.code: "{{{{ output.http.status }}}}"}}
    """)
    out = await run(pb, ctx=context({"auth_name": "api"}), credentials=creds_file)
    assert out.status == "ok", out.error
    assert out.result["data"] == {"authorization": "Bearer ***"}  # the server saw the token; we mask it
    assert out.context_updates == {"seen": "Bearer ***", "code": 200}
    assert SECRET not in json.dumps(out.result) + json.dumps(out.context_updates)


async def test_auth_map_form_and_accept_status(run, http_echo, creds_file):
    pb = playbook(f"""
        workflow:
          - step: start
            tool:
              kind: http
              url: "{http_echo}/missing"
              auth: {{source: credential, key: api}}
              spec: {{accept_status: [404]}}
    """)
    out = await run(pb, credentials=creds_file)
    assert out.status == "ok", out.error
    assert out.result["status_code"] == 404 and out.result["data"] == {"authorization": "Bearer ***"}


async def test_secret_in_an_error_message_and_traceback_is_masked(run, creds_file):
    pb = playbook("""
        keychain:
          - {name: tok, kind: credential, credential: api}
        workflow:
          - step: start
            tool:
              kind: python
              input: {t: "{{ keychain.tok.token }}"}
              code: "raise RuntimeError('token is ' + t)"
    """)
    out = await run(pb, credentials=creds_file)
    assert out.status == "error"
    assert "token is ***" in out.error["message"] and "token is ***" in out.error["py"]["traceback"]
    assert SECRET not in json.dumps(out.error) + json.dumps(out.result)


async def test_missing_credential_names_it_and_lists_names_without_values(run, creds_file):
    pb = playbook("""
        workflow:
          - step: start
            tool: {kind: shell, command: "true", auth: nobody}
    """)
    out = await run(pb, credentials=creds_file)
    assert out.status == "error" and out.error["kind"] == "credential"
    message = out.error["message"]
    assert "'nobody'" in message and "api, pg" in message
    assert SECRET not in message and "pw-Hidden-1" not in message


async def test_no_credentials_configured_says_how_to_configure(run):
    pb = playbook("workflow:\n  - step: start\n    tool: {kind: noop, auth: api}\n")
    out = await run(pb)
    assert out.error["kind"] == "credential" and "--credentials FILE" in out.error["message"]


async def test_keychain_static_bearer_and_credential_entries(run, creds_file):
    pb = playbook("""
        keychain:
          - {name: conf, kind: static, map: {user: "{{ who }}", key: k-Static-42}}
          - {name: tok, kind: bearer, token: "{{ keychain.conf.key }}-b"}
          - {name: db, kind: credential, credential: pg}
          - {name: later, kind: oauth2, endpoint: "http://127.0.0.1:1/token"}
        workflow:
          - step: start
            tool:
              kind: shell
              command: "echo {{ keychain.conf.user }} {{ keychain.conf.key }} {{ keychain.tok.token }} {{ keychain.db.db_host }} {{ keychain.db.db_password }} {{ keychain.tok.token | length }}"
    """)
    out = await run(pb, ctx=context({"who": "ada"}), credentials=creds_file)
    assert out.status == "ok", out.error
    # user and host are not secrets; the static key, the token built from it and the password are
    assert out.result["stdout"] == "ada *** *** localhost *** 13\n"  # token: k-Static-42-b


async def test_keychain_entry_named_in_auth(run, http_echo):
    pb = playbook(f"""
        keychain:
          - {{name: shop, kind: bearer, token: {SECRET}}}
        workflow:
          - step: start
            tool: {{kind: http, url: "{http_echo}/", auth: shop}}
    """)
    out = await run(pb, credentials=MemoryCredentials())
    assert out.status == "ok", out.error
    assert out.result["data"] == {"authorization": "Bearer ***"}


async def test_unsupported_keychain_kind_fails_clearly_when_referenced(run):
    pb = playbook("""
        keychain:
          - {name: erp, kind: google_id_token, endpoint: "http://127.0.0.1:1/token"}
        workflow:
          - step: start
            tool: {kind: shell, command: "echo {{ keychain.erp.access_token }}"}
    """)
    out = await run(pb, credentials=MemoryCredentials())
    assert out.status == "error" and out.error["kind"] == "credential"
    assert (
        "keychain kind 'google_id_token'" in out.error["message"] and "not supported" in out.error["message"]
    )
