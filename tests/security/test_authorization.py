"""Issue 10, authorization: each attack of the issue, tried against real server, worker and gateway
processes (``security.conftest.secured``), with the answer the fix gives.

Setup goes straight to the server with the service token (as the gateway would); every attack goes
through the gateway with a key scoped as in the issue: ``finance/*``, ``other/*``, ``*``. Paths are
sent with ``http.client`` so nothing on the client side normalises ``..`` away (the issue used
``curl --path-as-is``). The flood test runs last: it exhausts 127.0.0.1's pre-authentication limit.
"""

from __future__ import annotations

import http.client
import json
import time
from typing import Any
from urllib.parse import urlsplit

import jwt
import psycopg
import pytest

from security.conftest import JWT_SECRET, SECRET, Keys, Loopback, Secured
from support.cluster import wait_until

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")


def playbook(path: str, workflow: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return f"apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {{name: {name}, path: {path}}}\nworkflow:\n{workflow}"


SIMPLE = "  - step: start\n    tool: {kind: python, code: \"result = {'ran': True}\"}\n"


class World:
    """Playbooks, executions and keys the attacks use."""

    def __init__(self, secured: Secured) -> None:
        self.s = secured
        self.ids: dict[str, str] = {}
        for path in ("finance/report", "hr/payroll", "other/leaf"):
            self.ids[path] = self.register(path, SIMPLE)
        self.register(
            "other/caller", "  - step: start\n    tool: {kind: playbook, path: hr/payroll, input: {}}\n"
        )
        self.register(
            "other/ok", "  - step: start\n    tool: {kind: playbook, path: other/leaf, input: {}}\n"
        )
        self.finance_run = self.run("finance/report")
        self.hr_run = self.run("hr/payroll")
        answer = secured.direct(
            "POST",
            "/api/credentials",
            json={"name": "fin_vault", "type": "bearer", "data": {"token": SECRET}},
        )
        assert answer.status_code == 200, answer.text

    def register(self, path: str, workflow: str) -> str:
        answer = self.s.direct("POST", "/api/catalog/register", json={"content": playbook(path, workflow)})
        assert answer.status_code == 200, answer.text
        return str(answer.json()["catalog_id"])

    def run(self, path: str) -> str:
        answer = self.s.direct("POST", "/api/execute", json={"path": path})
        assert answer.status_code == 200, answer.text
        execution_id = str(answer.json()["execution_id"])
        finished(self.s, execution_id)
        return execution_id


def finished(secured: Secured, execution_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        found: dict[str, Any] = secured.direct("GET", f"/api/executions/{execution_id}").json()
        return found if found["status"] in TERMINAL else None

    return wait_until(done, f"execution {execution_id}")  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def world(secured: Secured) -> World:
    return World(secured)


def raw(
    secured: Secured, method: str, target: str, key: str | None, body: bytes | None = None
) -> tuple[int, dict[str, str], str]:
    """``method target`` sent exactly as written (no client-side normalisation)."""
    url = urlsplit(secured.gateway_url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, target, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode()
    finally:
        conn.close()


def audited(secured: Secured, path_like: str, status: int) -> list[tuple[str, str, dict[str, Any]]]:
    """Gateway audit rows whose path is like ``path_like`` with that status."""
    with psycopg.connect(secured.cluster.database_url) as conn:
        rows = conn.execute(
            "SELECT actor, decision, detail FROM noetl.audit WHERE action LIKE 'gateway.%%' "
            "AND resource LIKE %s AND (detail->>'status')::int = %s",
            (path_like, status),
        ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


# ---- 1. include_data spelled another way --------------------------------------------------------


def test_1_viewer_never_reads_credential_data_whatever_the_spelling(secured: Secured, world: World) -> None:
    viewer = secured.key("a1-viewer", "viewer")
    for value in ("on", "t", "y", "On", "T", "Y", "1", "true", "YES"):
        status, _, text = raw(secured, "GET", f"/noetl/credentials/fin_vault?include_data={value}", viewer)
        assert SECRET not in text, value
        assert status in (400, 403), (value, status, text)
    status, _, text = raw(
        secured, "GET", "/noetl/credentials/fin_vault?include_data=false&include_data=on", viewer
    )
    assert status == 400 and "more than once" in text and SECRET not in text
    # the server parses with the same function: 't' is refused there too, not read as true
    direct = secured.direct("GET", "/api/credentials/fin_vault", params={"include_data": "t"})
    assert direct.status_code == 400 and SECRET not in direct.text
    admin = secured.key("a1-admin", "admin")
    status, _, text = raw(secured, "GET", "/noetl/credentials/fin_vault?include_data=on", admin)
    assert status == 200 and SECRET in text  # 'on' means true for both, and an admin may


# ---- 2. '..' and encoded separators -------------------------------------------------------------


def test_2_dot_dot_and_encoded_separators_are_refused_and_audited(secured: Secured, world: World) -> None:
    viewer = secured.key("a2-viewer", "viewer", "finance/*")
    attacks = [
        "/noetl/catalog/../credentials/fin_vault?include_data=true",
        "/noetl/catalog/%2e%2e/credentials/fin_vault?include_data=true",
        "/noetl/catalog/x%2F..%2Fcredentials/fin_vault?include_data=true",
        f"/noetl/executions/{world.finance_run}/../{world.hr_run}",
        f"/noetl/executions/{world.finance_run}/%2E%2E/{world.hr_run}",
        "/noetl/executions/../queue",
        "/noetl/catalog/../metrics",
        "/noetl/x/../openapi.json",
    ]
    for target in attacks:
        status, _, text = raw(secured, "GET", target, viewer)
        assert status == 400, (target, status, text)
        assert "not canonical" in text and SECRET not in text and "payroll" not in text, target
    assert len(audited(secured, "%", 400)) >= len(attacks)
    # routes the policy does not name are refused, whoever asks
    admin = secured.key("a2-admin", "admin")
    for target in ("/noetl/openapi.json", "/noetl/docs", "/noetl/nothing/here"):
        status, _, text = raw(secured, "GET", target, admin)
        assert status == 403 and "does not expose" in text, (target, status, text)
    for target in ("/noetl/queue", "/noetl/metrics", "/noetl/events"):
        status, _, _ = raw(secured, "GET", target, viewer)
        assert status == 403, target


# ---- 3. execute checks one thing and runs another -----------------------------------------------


def test_3_execute_runs_exactly_the_entry_it_authorized(secured: Secured, world: World) -> None:
    operator = secured.key("a3-operator", "operator", "finance/*")
    hr_id = world.ids["hr/payroll"]
    mixed = secured.gw("POST", "execute", operator, json={"path": "finance/report", "catalog_id": int(hr_id)})
    assert mixed.status_code == 400 and "hr/payroll" in mixed.text, mixed.text
    by_id = secured.gw("POST", "execute", operator, json={"catalog_id": int(hr_id)})
    assert by_id.status_code == 403 and "hr/payroll" in by_id.text, by_id.text
    allowed = secured.gw("POST", "execute", operator, json={"path": "finance/report"})
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["path"] == "finance/report"
    assert allowed.json()["catalog_id"] == world.ids["finance/report"]
    # the server itself refuses a body whose catalog_id and path disagree
    direct = secured.direct("POST", "/api/execute", json={"path": "finance/report", "catalog_id": int(hr_id)})
    assert direct.status_code == 400, direct.text


# ---- 4. replay state ----------------------------------------------------------------------------


def test_4_replay_state_is_checked_against_the_execution_path(secured: Secured, world: World) -> None:
    viewer = secured.key("a4-viewer", "viewer", "finance/*")
    other = secured.gw("GET", "replay/state", viewer, params={"execution_id": world.hr_run})
    assert other.status_code == 403 and "hr/payroll" in other.text, other.text
    own = secured.gw("GET", "replay/state", viewer, params={"execution_id": world.finance_run})
    assert own.status_code == 200 and own.json()["status"] == "COMPLETED"


# ---- 5. sub-playbooks -----------------------------------------------------------------------------


def test_5_sub_playbooks_are_authorized_against_the_root_principal(secured: Secured, world: World) -> None:
    operator = secured.key("a5-operator", "operator", "other/*")
    started = secured.gw("POST", "execute", operator, json={"path": "other/caller"})
    assert started.status_code == 200, started.text
    summary = finished(secured, started.json()["execution_id"])
    assert summary["status"] == "FAILED", summary
    assert "hr/payroll" in json.dumps(summary) and "outside the paths" in json.dumps(summary)
    children = secured.direct(
        "GET", "/api/executions", params={"parent_execution_id": started.json()["execution_id"]}
    ).json()["executions"]
    assert children == []  # hr/payroll never started
    ok = secured.gw("POST", "execute", operator, json={"path": "other/ok"})
    assert ok.status_code == 200, ok.text
    assert finished(secured, ok.json()["execution_id"])["status"] == "COMPLETED"
    with psycopg.connect(secured.cluster.database_url) as conn:
        recorded = conn.execute(
            "SELECT path, principal FROM noetl.execution WHERE execution_id = %s OR parent_execution_id = %s",
            (int(ok.json()["execution_id"]), int(ok.json()["execution_id"])),
        ).fetchall()
    assert {r[0] for r in recorded} == {"other/ok", "other/leaf"}
    assert all(r[1]["name"] == "key:a5-operator" and r[1]["paths"] == ["other/*"] for r in recorded)


# ---- 11. JWT without paths ----------------------------------------------------------------------


def test_11_a_jwt_without_paths_gets_no_paths(secured: Secured, world: World) -> None:
    now = int(time.time())
    for extra in ({}, {"paths": []}):
        claims = {"sub": f"nopaths{len(extra)}", "role": "viewer", "exp": now + 300, **extra}
        token = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
        one = secured.gw("GET", f"executions/{world.finance_run}", token)
        assert one.status_code == 403, (extra, one.text)
        listed = secured.gw("GET", "executions", token)
        assert listed.status_code == 200 and listed.json()["executions"] == [], extra


# ---- 13. malformed input ------------------------------------------------------------------------


def test_13_malformed_bodies_paths_and_paging_get_400_and_are_audited(secured: Secured, world: World) -> None:
    operator = secured.key("a13-operator", "operator", "finance/*")
    developer = secured.key("a13-developer", "developer", "finance/*")
    deep = b"[" * 1000 + b"]" * 1000
    body = b'{"path": "finance/report", "payload": ' + deep + b"}"
    status, _, text = raw(secured, "POST", "/noetl/execute", operator, body)
    assert status == 400 and "deeper" in text, text
    deep_yaml = playbook("finance/deep", SIMPLE) + "workload:\n  x: " + "[" * 5000 + "]" * 5000 + "\n"
    answer = secured.gw("POST", "catalog/register", developer, json={"content": deep_yaml})
    assert answer.status_code == 400, answer.text
    status, headers, text = raw(secured, "GET", "/noetl/executions/", operator)
    assert status == 400 and "location" not in headers and "trailing" in text, (status, headers, text)
    status, headers, _ = raw(secured, "GET", "/noetl/catalog/list/", operator)
    assert status == 400 and "location" not in headers
    for target in (
        "/noetl/executions?offset=100000000000000000000",
        f"/noetl/executions/{world.finance_run}?page=10000000000000000000",
        f"/noetl/executions/{world.finance_run}/events?since_event_id=-1",
    ):
        status, _, text = raw(secured, "GET", target, operator)
        assert status == 400, (target, status, text)
    # the server alone answers 400 too (a huge offset used to be a 500 "bigint out of range")
    direct = secured.direct("GET", "/api/executions", params={"offset": str(2**63)})
    assert direct.status_code in (400, 422), direct.text
    deeper = b"[" * 50_000 + b"]" * 50_000
    deep_direct = secured.direct(
        "POST",
        "/api/execute",
        content=b'{"path": "finance/report", "payload": ' + deeper + b"}",
        headers={"content-type": "application/json"},
    )
    assert deep_direct.status_code == 400, deep_direct.text
    assert audited(secured, "/noetl/executions", 400) and audited(secured, "/noetl/execute", 400)


# ---- 14. client address and the principal header ------------------------------------------------


def test_14_forwarded_for_is_ignored_from_untrusted_peers(secured: Secured, world: World) -> None:
    viewer = secured.key("a14-viewer", "viewer", "finance/*")
    answer = secured.gw("GET", "executions", viewer, headers={"X-Forwarded-For": "203.0.113.77"})
    assert answer.status_code == 200
    with psycopg.connect(secured.cluster.database_url) as conn:
        rows = conn.execute("SELECT detail FROM noetl.audit WHERE actor = 'key:a14-viewer'").fetchall()
    clients = [r[0].get("client") for r in rows]
    assert clients and set(clients) == {"127.0.0.1"}, clients  # the peer, not what it claimed
    # the server believes X-NoETL-Principal only with its service token
    spoofed = secured.direct(
        "GET", "/api/credentials/fin_vault", headers={"Authorization": "", "X-NoETL-Principal": "admin"}
    )
    assert spoofed.status_code == 401


# ---- 15. catalog paths --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ('"finance/report "', "' '"),
        ('"finance/re\\nport"', "'\\n'"),
        ("finance/./report", "'.' part"),
        ("fin\u0430nce/report", "U+0430"),
        ("finance/report/", "empty part"),
    ],
)
def test_15_catalog_paths_have_one_spelling(secured: Secured, path: str, says: str) -> None:
    developer = secured.key(f"a15-dev-{abs(hash(path)) % 10**6}", "developer", "*")
    content = (
        f"apiVersion: noetl.io/v2\nkind: Playbook\nmetadata:\n  name: x\n  path: {path}\nworkflow:\n{SIMPLE}"
    )
    answer = secured.gw("POST", "catalog/register", developer, json={"content": content})
    assert answer.status_code == 400, answer.text
    reason = answer.json()["detail"]["reason"]
    assert "not a valid catalog path" in reason and says in reason and "<playbook>:5:" in reason, reason
    direct = secured.direct("POST", "/api/catalog/register", json={"content": content})
    assert direct.status_code == 422 and direct.json()["detail"]["line"] == 5, direct.text


# ---- 16. lists and parent_execution_id ----------------------------------------------------------


def test_16_lists_are_filtered_and_parent_execution_is_checked(secured: Secured, world: World) -> None:
    for name, path in (("fin-daily", "finance/report"), ("hr-daily", "hr/payroll")):
        made = secured.direct(
            "POST", "/api/schedules", json={"name": name, "path": path, "interval_seconds": 86400}
        )
        assert made.status_code == 200, made.text
        made = secured.direct("PUT", f"/api/triggers/{name}/config", json={"path": path, "secret": "s" * 20})
        assert made.status_code == 200, made.text
    viewer = secured.key("a16-viewer", "viewer", "finance/*")
    schedules = secured.gw("GET", "schedules", viewer).json()["schedules"]
    assert [s["name"] for s in schedules] == ["fin-daily"]
    triggers = secured.gw("GET", "triggers", viewer).json()["triggers"]
    assert [t["name"] for t in triggers] == ["fin-daily"]
    workers = secured.gw("GET", "worker/pools", viewer).json()["workers"]
    assert workers and all(
        set(w) == {"name", "pools", "status", "capacity", "heartbeat_age"} for w in workers
    )
    operator = secured.key("a16-operator", "operator", "finance/*")
    child = secured.gw(
        "POST", "execute", operator, json={"path": "finance/report", "parent_execution_id": int(world.hr_run)}
    )
    assert child.status_code == 403 and "parent execution" in child.text, child.text
    own = secured.gw(
        "POST",
        "execute",
        operator,
        json={"path": "finance/report", "parent_execution_id": int(world.finance_run)},
    )
    assert own.status_code == 200, own.text


# ---- 12. pre-authentication limits (last: it exhausts 127.0.0.1's budget) -----------------------


async def test_12a_unknown_api_keys_are_remembered_in_a_bounded_cache(secured: Secured) -> None:
    from noetl.gateway.identity import Authenticator, Unauthenticated
    from noetl.gateway.settings import GatewaySettings
    from noetl.store import db

    settings = GatewaySettings(database_url=secured.cluster.database_url, negative_cache_size=5)
    pool = await db.pool(secured.cluster.database_url, 1, 2)
    try:
        authenticator = Authenticator(settings, pool)
        for n in range(50):
            with pytest.raises(Unauthenticated):
                await authenticator.principal({"authorization": f"Bearer noetl_unknown{n:04d}"})
        assert authenticator.unknown_keys_cached == 5
    finally:
        await pool.close()


def test_12b_unknown_key_ids_refetch_the_jwks_at_most_once_a_minute(
    secured: Secured, signing_keys: Keys, jwks_server: Loopback
) -> None:
    now = int(time.time())
    before = len(jwks_server.hits)
    for n in range(6):
        token = jwt.encode(
            {"sub": "k", "role": "viewer", "exp": now + 60},
            signing_keys.stranger,
            "RS256",
            headers={"kid": f"made-up-{n}"},
        )
        assert secured.gw("GET", "executions", token).status_code == 401
    assert len(jwks_server.hits) - before <= 1


def test_12c_a_flood_of_bad_credentials_gets_429_and_few_audit_rows(secured: Secured) -> None:
    def anonymous_rows() -> int:
        with psycopg.connect(secured.cluster.database_url) as conn:
            row = conn.execute("SELECT count(*) FROM noetl.audit WHERE actor = 'anonymous'").fetchone()
        return int(row[0]) if row else 0

    before = anonymous_rows()
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(16) as pool:  # faster than the bucket refills (5 a second)
        answers = list(
            pool.map(lambda _: secured.gw("GET", "executions", "noetl_not-a-real-key"), range(200))
        )
    statuses = [a.status_code for a in answers]
    assert 429 in statuses and set(statuses) <= {401, 429}, statuses
    limited = next(a for a in answers if a.status_code == 429)
    assert int(limited.headers["Retry-After"]) >= 1
    written = anonymous_rows() - before
    assert written < statuses.count(401) + 5, (written, statuses.count(401))
