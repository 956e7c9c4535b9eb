"""Redaction that follows the secret (issue 10, items 9 and 10), on real server, worker and gateway.

Each test plants secrets of its own (with characters that percent-encoding and JSON escape), makes
playbooks leak them in the forms item 10 lists, and then looks for every form of them in every
table, the API answers and the processes' log files.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from urllib.parse import quote, quote_plus

import psycopg
import pytest

from security.conftest import Loopback, Secured
from security.test_secrets import events, pg_fields, put, run

USER = "alice"
BASIC = 'Basic-pw/"Zx91 ñ'  # a slash, a quote, a space and a non-ASCII letter: every encoding differs
TOKEN = 'Tok-"k3y/9 é-planted'
WEBHOOK_PATH = "hooks/T0ken-In-Path-5531"
WEBHOOK_KEY = "Url-Key-7781-planted"
ALIAS = "Alias-S3cret-col-5521"
CHILD = "Child-pw-Q9-planted-3310"


def forms(secret: str) -> set[str]:
    """The secret and the forms it takes in transit (computed here, independently of the code)."""
    found = {
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        base64.b64encode(secret.encode()).decode(),
        base64.b64encode(f"{USER}:{secret}".encode()).decode(),
    }
    return found


def leaks(text: str, *secrets: str) -> list[str]:
    return sorted(form for secret in secrets for form in forms(secret) if form in text)


def stored(secured: Secured) -> str:
    """Everything the database keeps that a secret must not reach (credentials are encrypted)."""
    dumps = []
    with psycopg.connect(secured.cluster.database_url) as conn:
        for table in ("event", "command", "execution", "audit", "result"):
            row = conn.execute(
                f"SELECT coalesce(string_agg(t::text, '\n'), '') FROM noetl.{table} t"
            ).fetchone()
            assert row is not None
            dumps.append(row[0])
    return "\n".join(dumps)


def answers(secured: Secured, execution_ids: list[str]) -> str:
    admin = secured.key(f"redaction-admin-{len(execution_ids)}", "admin")
    paths = [
        "executions",
        *(f"executions/{e}" for e in execution_ids),
        *(f"executions/{e}/events" for e in execution_ids),
    ]
    return "\n".join(secured.gw("GET", path, admin).text for path in paths)


@pytest.fixture(scope="module")
def webhook_server() -> Iterator[Loopback]:
    """Answers 500 quoting the path and query it was called with (an API that echoes its URL)."""
    from security.conftest import serve

    yield from serve(lambda _h, state: (500, {"error": "boom", "path": state.hits[-1]["path"]}))


LEAKY_PLAYBOOKS = {
    "basic_auth_echoed": """
workflow:
  - step: start
    tool: {kind: http, method: GET, url: "{{ workload.echo }}/api", auth: basic_cred}
""",
    "secret_in_query_logged": """
keychain:
  - {name: k, kind: credential, credential: token_cred}
workflow:
  - step: start
    tool: {kind: http, method: GET, url: "{{ workload.echo }}/api", params: {token: "{{ keychain.k.token }}"}}
""",
    "webhook_url_echoed": """
keychain:
  - {name: w, kind: credential, credential: webhook_cred}
workflow:
  - step: start
    tool: {kind: http, method: POST, url: "{{ keychain.w.url }}", json: {text: hi}}
""",
    "derived_forms_and_keys": """
keychain:
  - {name: k, kind: credential, credential: token_cred}
  - {name: b, kind: credential, credential: basic_cred}
workflow:
  - step: start
    tool:
      kind: python
      input: {s: "{{ keychain.k.token }}", p: "{{ keychain.b.password }}"}
      code: |
        import base64, json, urllib.parse
        result = {
            s: 'a secret as a key',
            'nested': {p: 1},
            'percent': urllib.parse.quote(s, safe=''),
            'plus': urllib.parse.quote_plus(s),
            'json_text': json.dumps({'v': s}),
            'json_ascii': json.dumps({'v': p}, ensure_ascii=False),
            'b64': base64.b64encode(s.encode()).decode(),
            'basic': base64.b64encode(('alice:' + p).encode()).decode(),
        }
""",
    "sql_alias": """
workflow:
  - step: start
    tool: {kind: postgres, auth: alias_cred, command: "SELECT 1 AS \\"{{ keychain.a.db_password }}\\""}
keychain:
  - {name: a, kind: credential, credential: alias_cred}
""",
    "fd_writes_of_a_python_task": """
keychain:
  - {name: k, kind: credential, credential: token_cred}
workflow:
  - step: start
    tool:
      kind: python
      input: {s: "{{ keychain.k.token }}"}
      code: |
        import os, subprocess
        os.write(1, ('fd1 ' + s + '\\n').encode())
        os.write(2, ('fd2 ' + s + '\\n').encode())
        subprocess.run(['sh', '-c', 'echo "child $S" >&2; echo "child $S"'], env={'S': s})
        result = {'done': True}
""",
}


def test_redaction_follows_the_secret(
    secured: Secured, echo_server: Loopback, webhook_server: Loopback
) -> None:
    """Item 10: derived forms, keys, SQL aliases, the httpx logger, url/header fields, fd 1 and 2."""
    put(secured, "basic_cred", "basic", {"username": USER, "password": BASIC})
    put(secured, "token_cred", "bearer", {"token": TOKEN})
    webhook = f"{webhook_server.url}/{WEBHOOK_PATH}?key={WEBHOOK_KEY}"
    put(secured, "webhook_cred", "generic", {"url": webhook})
    put(secured, "alias_cred", "postgres", pg_fields(secured.cluster.database_url, ALIAS))
    summaries = {
        name: run(secured, f"redact/{name}", body, {"echo": echo_server.url})
        for name, body in LEAKY_PLAYBOOKS.items()
    }
    # the leaks really happened: the servers got the secrets, the playbooks handled them
    sent = json.dumps(echo_server.hits)
    assert base64.b64encode(f"{USER}:{BASIC}".encode()).decode() in sent
    assert quote(TOKEN, safe="") in sent or quote_plus(TOKEN) in sent
    assert any(WEBHOOK_PATH in hit["path"] and WEBHOOK_KEY in hit["path"] for hit in webhook_server.hits)
    assert summaries["derived_forms_and_keys"]["status"] == "COMPLETED", summaries["derived_forms_and_keys"]
    assert summaries["sql_alias"]["status"] == "COMPLETED", summaries["sql_alias"]
    assert summaries["fd_writes_of_a_python_task"]["status"] == "COMPLETED"
    assert summaries["basic_auth_echoed"]["status"] == "FAILED"  # the echo answers 500, quoting the header
    assert summaries["webhook_url_echoed"]["status"] == "FAILED"

    secrets = (BASIC, TOKEN, WEBHOOK_PATH, WEBHOOK_KEY, ALIAS)
    found: dict[str, list[str]] = {}  # every leak at once, so a failure names each form and place
    for name, summary in summaries.items():
        shown = json.dumps(summary) + events(secured, summary["execution_id"])
        found[name] = leaks(shown, *secrets)
        if "***" not in shown and name != "fd_writes_of_a_python_task":  # that one's output is dropped
            found[name].append("(no *** mask: the secret was not recognised)")
    found["database"] = leaks(stored(secured), *secrets)
    found["api"] = leaks(answers(secured, [s["execution_id"] for s in summaries.values()]), *secrets)
    for process in [*secured.cluster.processes, secured.gateway]:
        found[f"log of {process.name}"] = leaks(process.output(), *secrets)
    leaked = {where: forms for where, forms in found.items() if forms}
    assert not leaked, "\n".join(f"{where}: {forms}" for where, forms in leaked.items())
    assert "***" in json.dumps(summaries["derived_forms_and_keys"]["result"])


CHILD_PLAYBOOK = """apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: child, path: subpb/child}
workflow:
  - step: start
    tool: {kind: python, input: {pw: "{{ workload.pw }}"}, code: "result = {'length': len(pw)}"}
"""

PARENT = """
keychain:
  - {name: fin, kind: credential, credential: child_cred}
workflow:
  - step: start
    tool: {kind: playbook, path: subpb/child, input: {pw: "{{ keychain.fin.db_password }}"}}
"""


def test_secrets_passed_to_a_sub_playbook_are_not_stored(secured: Secured) -> None:
    """Item 9: the child's payload, playbook.initialized event, command context and API answer."""
    put(secured, "child_cred", "postgres", {"db_host": "127.0.0.1", "db_password": CHILD})
    registered = secured.direct("POST", "/api/catalog/register", json={"content": CHILD_PLAYBOOK})
    assert registered.status_code == 200, registered.text
    parent = run(secured, "subpb/parent", PARENT)
    assert parent["status"] == "COMPLETED", parent
    with psycopg.connect(secured.cluster.database_url) as conn:
        rows = conn.execute(
            "SELECT execution_id::text FROM noetl.execution WHERE parent_execution_id = %s",
            (int(parent["execution_id"]),),
        ).fetchall()
    assert len(rows) == 1
    child_id = rows[0][0]
    child_events = events(secured, child_id)
    assert "playbook.initialized" in child_events and "***" in child_events
    assert not leaks(child_events, CHILD)
    assert not leaks(stored(secured), CHILD)
    assert not leaks(answers(secured, [parent["execution_id"], child_id]), CHILD)
    assert not leaks(secured.logs(), CHILD)
