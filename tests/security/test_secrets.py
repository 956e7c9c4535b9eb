"""Secrets against real processes: encryption at rest, scopes, redaction of everything a worker
reports when a playbook tries to leak a credential, the template sandbox, SQL bind parameters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from security.conftest import SECRET, Loopback, Secured
from support.cluster import wait_until

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")


def run(secured: Secured, path: str, body: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """Register ``body`` under ``path``, execute it on the cluster, and return its final summary."""
    name = path.rsplit("/", 1)[-1]
    content = f"apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {{name: {name}, path: {path}}}\n{body}"
    registered = secured.direct("POST", "/api/catalog/register", json={"content": content})
    assert registered.status_code == 200, registered.text
    started = secured.direct("POST", "/api/execute", json={"path": path, "payload": payload or {}})
    assert started.status_code == 200, started.text
    execution_id = started.json()["execution_id"]

    def finished() -> dict[str, Any] | None:
        found = secured.direct("GET", f"/api/executions/{execution_id}").json()
        return found if found["status"] in TERMINAL else None

    return wait_until(finished, f"execution of {path}")


def events(secured: Secured, execution_id: str) -> str:
    answer = secured.direct("GET", f"/api/executions/{execution_id}/events", params={"limit": 500})
    return answer.text


def pg_fields(database_url: str, password: str | None) -> dict[str, Any]:
    info = conninfo_to_dict(database_url)
    data = {
        "db_host": info.get("host", "127.0.0.1"),
        "db_port": str(info.get("port", "5432")),
        "db_user": info.get("user", "postgres"),
        "db_name": info["dbname"],
    }
    if password:
        data["db_password"] = password
    return data


def put(secured: Secured, name: str, kind: str, data: dict[str, Any], allow: list[str] | None = None) -> None:
    body: dict[str, Any] = {"name": name, "type": kind, "data": data}
    if allow:
        body["allow_paths"] = allow
    answer = secured.direct("POST", "/api/credentials", json=body)
    assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module")
def planted(secured: Secured) -> Secured:
    put(secured, "leaky", "bearer", {"token": SECRET})
    # PostgreSQL here trusts loopback, so the planted password does not stop the connection.
    put(secured, "pgleak", "postgres", pg_fields(secured.cluster.database_url, SECRET))
    return secured


LEAKS = {
    "http_error_echo": """
workflow:
  - step: start
    tool: {kind: http, method: GET, url: "{{ workload.echo }}/api", auth: leaky}
""",
    "sql_error_quotes_it": """
keychain:
  - {name: pg, kind: credential, credential: pgleak}
workflow:
  - step: start
    tool: {kind: postgres, auth: pgleak, command: "SELECT '{{ keychain.pg.db_password }}'::int"}
""",
    "python_print_and_raise": """
keychain:
  - {name: k, kind: credential, credential: leaky}
workflow:
  - step: start
    tool: {kind: python, input: {s: "{{ keychain.k.token }}"}, code: "print('the secret is', s)\\nraise ValueError('leaked ' + s)"}
""",
    "python_returns_it": """
keychain:
  - {name: k, kind: credential, credential: leaky}
workflow:
  - step: start
    tool: {kind: python, input: {s: "{{ keychain.k.token }}"}, code: "result = {'value': s, 'shouted': 'x' + s + 'y'}"}
""",
    "shell_echo_and_set": """
keychain:
  - {name: k, kind: credential, credential: leaky}
workflow:
  - step: start
    tool: {kind: shell, command: "echo {{ keychain.k.token }}; echo {{ keychain.k.token }} >&2; exit 3"}
""",
}


def test_a_planted_secret_never_leaves_the_worker(planted: Secured, echo_server: Loopback) -> None:
    outcomes = {}
    for name, body in LEAKS.items():
        summary = run(planted, f"leaks/{name}", body, {"echo": echo_server.url})
        outcomes[name] = (summary, events(planted, summary["execution_id"]))

    # every attempt really did handle the secret: the echo server got it, the outputs carry the mask
    assert any(SECRET in json.dumps(hit) for hit in echo_server.hits)
    for name, (summary, log) in outcomes.items():
        assert "***" in log or "***" in json.dumps(summary), name
        assert SECRET not in log and SECRET not in json.dumps(summary), name
    assert outcomes["python_returns_it"][0]["status"] == "COMPLETED"
    assert outcomes["http_error_echo"][0]["status"] == "FAILED"

    # ... nor is it anywhere the system keeps or shows things
    with psycopg.connect(planted.cluster.database_url) as conn:
        for table in ("event", "command", "execution", "audit", "result", "catalog"):
            dump = conn.execute(
                f"SELECT coalesce(string_agg(t::text, '\n'), '') FROM noetl.{table} t"
            ).fetchone()
            assert dump is not None and SECRET not in dump[0], table
        sealed = conn.execute("SELECT data_encrypted FROM noetl.credential WHERE name = 'leaky'").fetchone()
    assert sealed is not None and SECRET.encode() not in bytes(sealed[0])  # encrypted at rest
    admin = planted.key("leak-admin", "admin")
    for path in ("executions", *(f"executions/{s['execution_id']}/events" for s, _ in outcomes.values())):
        assert SECRET not in planted.gw("GET", path, admin).text
    assert SECRET not in planted.logs()
    # the reads were audited, without the value
    with psycopg.connect(planted.cluster.database_url) as conn:
        reads = conn.execute(
            "SELECT count(*) FROM noetl.audit WHERE action = 'credential.read' AND decision = 'read' "
            "AND execution_id IS NOT NULL AND actor LIKE 'worker:%'"
        ).fetchone()
    assert reads is not None and reads[0] >= len(LEAKS)


def test_a_credential_outside_its_scope_fails_the_step(secured: Secured) -> None:
    put(secured, "fin_only", "bearer", {"token": "fin-token-abc123"}, allow=["finance/*"])
    body = """
keychain:
  - {name: k, kind: credential, credential: fin_only}
workflow:
  - step: start
    tool: {kind: shell, command: "echo {{ keychain.k.token }}"}
"""
    outside = run(secured, "marketing/use_fin", body)
    assert outside["status"] == "FAILED"
    assert "outside its scope" in json.dumps(outside["error"]) and "marketing/use_fin" in json.dumps(
        outside["error"]
    )
    inside = run(secured, "finance/use_fin", body)
    assert inside["status"] == "COMPLETED", inside
    with psycopg.connect(secured.cluster.database_url) as conn:
        rows = conn.execute(
            "SELECT decision, detail->>'playbook' FROM noetl.audit WHERE action = 'credential.read' AND resource = 'fin_only'"
        ).fetchall()
    assert ("denied", "marketing/use_fin") in rows and ("read", "finance/use_fin") in rows


@pytest.mark.parametrize(
    "expression",
    [
        "''.__class__.__mro__",
        "''.__class__.__mro__[1].__subclasses__()",
        "cycler.__init__.__globals__.os.popen('touch MARKER').read()",
        "self.__init__.__globals__.__builtins__.open('MARKER', 'w')",
        "lipsum.__globals__['os'].system('touch MARKER')",
    ],
)
def test_template_sandbox_escapes_fail_the_step_without_running(secured: Secured, expression: str) -> None:
    marker = secured.root / "sandbox-marker"
    text = expression.replace("MARKER", str(marker))
    body = f'workflow:\n  - step: start\n    tool: {{kind: shell, command: "echo {{{{ {text} }}}} > {marker}"}}\n'
    summary = run(secured, f"sandbox/escape_{abs(hash(expression))}", body)
    assert summary["status"] == "FAILED", summary
    assert not Path(marker).exists()


def test_sql_bind_parameters_are_not_injectable(secured: Secured) -> None:
    put(secured, "pgdb", "postgres", pg_fields(secured.cluster.database_url, None))
    body = """
workflow:
  - step: start
    tool:
      - {name: make, kind: postgres, auth: pgdb, command: "CREATE TABLE IF NOT EXISTS public.inj (v text)"}
      - {name: put, kind: postgres, auth: pgdb, command: "INSERT INTO public.inj (v) VALUES (%(v)s)", params: {v: "{{ workload.v }}"}}
      - {name: get, kind: postgres, auth: pgdb, command: "SELECT v FROM public.inj"}
"""
    evil = "x'); DROP TABLE public.inj; --"
    summary = run(secured, "sql/injection", body, {"v": evil})
    assert summary["status"] == "COMPLETED", summary
    with psycopg.connect(secured.cluster.database_url) as conn:
        rows = conn.execute("SELECT v FROM public.inj").fetchall()
    assert rows == [(evil,)]
