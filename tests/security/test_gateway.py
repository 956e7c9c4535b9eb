"""The gateway against real processes: authentication, roles and paths, JWTs, rate limits, body
limits, forwarding, and the audit trail of its decisions."""

from __future__ import annotations

import time

import httpx
import jwt
import psycopg

from security.conftest import JWT_SECRET, Keys, Secured

PLAYBOOK = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {{name: {name}, path: {path}}}
workflow:
  - step: start
    tool: {{kind: python, code: "result = {{'ok': True}}"}}
"""


def register(secured: Secured, key: str, path: str) -> httpx.Response:
    content = PLAYBOOK.format(name=path.rsplit("/", 1)[-1], path=path)
    return secured.gw("POST", "catalog/register", key, json={"content": content})


def wait_done(secured: Secured, execution_id: str) -> dict:
    def done() -> dict | None:
        body = secured.direct("GET", f"/api/executions/{execution_id}").json()
        return body if body["status"] in ("COMPLETED", "FAILED", "CANCELLED") else None

    from support.cluster import wait_until

    return wait_until(done, f"execution {execution_id} to finish")


def test_no_or_bad_credentials_get_401(secured: Secured) -> None:
    assert secured.gw("GET", "executions").status_code == 401
    assert secured.gw("GET", "executions", "noetl_not-a-real-key").status_code == 401
    assert secured.gw("GET", "executions", "garbage").status_code == 401
    answer = secured.gw("GET", "executions", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert answer.status_code == 401 and "WWW-Authenticate" in answer.headers
    assert answer.json()["detail"]["code"] == "unauthenticated"


def test_roles_and_paths_decide_register_and_execute(secured: Secured) -> None:
    admin = secured.key("gw-admin", "admin")
    developer = secured.key("gw-dev", "developer", "finance/*")
    operator = secured.key("gw-ops", "operator", "finance/*")
    viewer = secured.key("gw-viewer", "viewer")

    assert register(secured, viewer, "finance/report").status_code == 403
    assert register(secured, operator, "finance/report").status_code == 403  # operators run, not register
    assert register(secured, developer, "marketing/report").status_code == 403  # outside its paths
    assert register(secured, developer, "finance/report").status_code == 200
    assert register(secured, admin, "marketing/report").status_code == 200

    assert secured.gw("POST", "execute", viewer, json={"path": "finance/report"}).status_code == 403
    refused = secured.gw("POST", "execute", operator, json={"path": "marketing/report"})
    assert refused.status_code == 403 and "outside the paths" in refused.json()["detail"]["reason"]
    started = secured.gw("POST", "execute", operator, json={"path": "finance/report"})
    assert started.status_code == 200, started.text
    execution_id = started.json()["execution_id"]
    assert wait_done(secured, execution_id)["status"] == "COMPLETED"

    # reading one execution is checked against its playbook's path
    assert secured.gw("GET", f"executions/{execution_id}", operator).status_code == 200
    other = secured.key("gw-ops-mkt", "operator", "marketing/*")
    assert secured.gw("GET", f"executions/{execution_id}", other).status_code == 403
    # single catalog entries too
    assert secured.gw("POST", "catalog/resource", other, json={"path": "finance/report"}).status_code == 403
    assert (
        secured.gw("POST", "catalog/resource", operator, json={"path": "finance/report"}).status_code == 200
    )
    # lists are filtered to the principal's paths
    listed = secured.gw("GET", "executions", other).json()["executions"]
    assert all(e["path"].startswith("marketing/") for e in listed)
    assert any(
        e["execution_id"] == execution_id for e in secured.gw("GET", "executions", admin).json()["executions"]
    )

    # the audit trail has both decisions, with the principal's name
    with psycopg.connect(secured.cluster.database_url) as conn:
        rows = conn.execute(
            "SELECT actor, action, decision FROM noetl.audit WHERE action LIKE 'gateway.%'"
        ).fetchall()
    assert ("key:gw-ops", "gateway.execute", "allowed") in rows
    assert ("key:gw-ops", "gateway.execute", "denied") in rows
    assert ("anonymous", "gateway.read", "denied") in rows


def test_viewer_cannot_read_credential_data(secured: Secured) -> None:
    admin = secured.key("cred-admin", "admin")
    viewer = secured.key("cred-viewer", "viewer")
    stored = secured.gw(
        "POST",
        "credentials",
        admin,
        json={"name": "vault1", "type": "bearer", "data": {"token": "tok-123456"}},
    )
    assert stored.status_code == 200 and "tok-123456" not in stored.text
    assert (
        secured.gw(
            "POST", "credentials", viewer, json={"name": "x", "type": "bearer", "data": {}}
        ).status_code
        == 403
    )
    names = secured.gw("GET", "credentials", viewer)
    assert names.status_code == 200 and "vault1" in names.text and "tok-123456" not in names.text
    assert secured.gw("GET", "credentials/vault1", viewer).status_code == 200
    assert secured.gw("GET", "credentials/vault1?include_data=true", viewer).status_code == 403
    assert secured.gw("GET", "credentials/vault1", viewer, params={"include_data": "TRUE"}).status_code == 403
    full = secured.gw("GET", "credentials/vault1?include_data=true", admin)
    assert full.status_code == 200 and full.json()["data"] == {"token": "tok-123456"}
    with psycopg.connect(secured.cluster.database_url) as conn:
        reads = conn.execute(
            "SELECT actor, detail::text FROM noetl.audit WHERE action = 'credential.read' AND resource = 'vault1'"
        ).fetchall()
    assert [actor for actor, _ in reads] == ["key:cred-admin"]
    assert all("tok-123456" not in detail for _, detail in reads)


def _token(key: object, algorithm: str, kid: str | None = None, **claims: object) -> str:
    body = {"sub": "alice", "role": "viewer", "exp": int(time.time()) + 300, **claims}
    return jwt.encode(body, key, algorithm=algorithm, headers={"kid": kid} if kid else None)  # type: ignore[arg-type]


def test_jwts_hs256_and_jwks(secured: Secured, signing_keys: Keys) -> None:
    assert secured.gw("GET", "executions", _token(JWT_SECRET, "HS256")).status_code == 200
    assert secured.gw("GET", "executions", _token(signing_keys.rsa, "RS256", "rsa-1")).status_code == 200
    assert secured.gw("GET", "executions", _token(signing_keys.ec, "ES256", "ec-1")).status_code == 200

    expired = secured.gw("GET", "executions", _token(JWT_SECRET, "HS256", exp=int(time.time()) - 600))
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]["reason"]
    forged = secured.gw("GET", "executions", _token("another-secret-that-is-long-enough", "HS256"))
    assert forged.status_code == 401 and "signature" in forged.json()["detail"]["reason"]
    stranger = secured.gw("GET", "executions", _token(signing_keys.stranger, "RS256", "rsa-1"))
    assert stranger.status_code == 401
    unknown_kid = secured.gw("GET", "executions", _token(signing_keys.rsa, "RS256", "rsa-9"))
    assert unknown_kid.status_code == 401
    unsigned = jwt.encode(
        {"sub": "alice", "role": "admin", "exp": int(time.time()) + 300}, None, algorithm="none"
    )
    assert secured.gw("GET", "executions", unsigned).status_code == 401
    no_role = secured.gw("GET", "executions", _token(JWT_SECRET, "HS256", role="root"))
    assert no_role.status_code == 401
    # the role in the token counts: a viewer token cannot execute
    assert (
        secured.gw(
            "POST", "execute", _token(JWT_SECRET, "HS256"), json={"path": "finance/report"}
        ).status_code
        == 403
    )


def test_rate_limit_answers_429_with_retry_after(secured: Secured) -> None:
    key = secured.key("burst", "viewer")
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(16) as pool:  # faster than the bucket refills (2 a second)
        answers = list(pool.map(lambda _: secured.gw("GET", "executions", key), range(60)))
    limited = [a for a in answers if a.status_code == 429]
    assert limited, [a.status_code for a in answers]
    assert int(limited[-1].headers["Retry-After"]) >= 1
    other = secured.key("calm", "viewer")  # one principal's limit is not another's
    assert secured.gw("GET", "executions", other).status_code == 200


def test_oversized_bodies_get_413(secured: Secured) -> None:
    admin = secured.key("big", "admin")
    big = {"content": "x" * 70_000}
    assert secured.gw("POST", "catalog/register", admin, json=big).status_code == 413
    direct = secured.direct("POST", "/api/catalog/register", json={"content": "x" * 140_000})
    assert direct.status_code == 413


def test_catalog_paths_with_dot_dot_or_absolute_are_rejected(secured: Secured) -> None:
    admin = secured.key("paths-admin", "admin")
    for bad in ("../etc/passwd", "finance/../../x", "a//b"):
        answer = register(secured, admin, bad)
        assert answer.status_code == 400, (bad, answer.text)
    # A leading '/' is legacy syntax the loader rewrites; the gateway authorizes what is registered.
    rewritten = register(secured, admin, "/etc/passwd")
    assert rewritten.status_code == 200 and rewritten.json()["path"] == "etc/passwd", rewritten.text


def test_revoked_key_stops_working(secured: Secured) -> None:
    key = secured.key("short-lived", "viewer")
    assert secured.gw("GET", "executions", key).status_code == 200
    secured.noetl("token", "revoke", "short-lived")
    from support.cluster import wait_until

    wait_until(
        lambda: secured.gw("GET", "executions", key).status_code == 401, "the revoked key to be refused", 30
    )
    listed = secured.noetl("token", "list", "--json").stdout
    assert "short-lived" in listed and key not in listed


def test_server_wants_the_service_token_when_given_one(secured: Secured) -> None:
    url = secured.cluster.url
    wrong = httpx.get(f"{url}/api/executions", headers={"Authorization": "Bearer nope"}, timeout=5)
    assert wrong.status_code == 401
    right = httpx.get(
        f"{url}/api/executions", headers={"Authorization": "Bearer service-token-for-tests-5b1e"}, timeout=5
    )
    assert right.status_code == 200


def test_cli_through_the_gateway(secured: Secured) -> None:
    operator = secured.key("cli-ops", "operator", "finance/*")
    developer = secured.key("cli-dev", "developer", "finance/*")
    playbook = secured.root / "cli.yaml"
    playbook.write_text(PLAYBOOK.format(name="cli", path="finance/cli"))
    gw = ["--gateway", secured.gateway_url]
    secured.noetl(*gw, "--api-key", developer, "catalog", "register", str(playbook))
    listed = secured.noetl(*gw, "--api-key", operator, "credential", "list")
    assert "NAME" in listed.stdout
    refused = secured.noetl(*gw, "--api-key", "noetl_wrong", "credential", "list", check=False)
    assert refused.returncode != 0 and "401" in refused.stderr
    env = {"NOETL_GATEWAY_URL": secured.gateway_url, "NOETL_API_KEY": developer}
    ran = secured.noetl("run", str(playbook), "--runtime", "distributed", "--json", extra_env=env)
    assert '"COMPLETED"' in ran.stdout
