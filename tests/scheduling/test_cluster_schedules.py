"""Schedules and webhook triggers with real servers and a real worker.

Two servers share the database (and the leader lock): a cron schedule (6 fields: every second) and
an interval schedule fire; the leader is SIGKILLed and the other server takes over, and both
schedules keep firing. The CLI's schedule list, pause, resume and delete work on the way. A webhook
trigger starts an execution only when the body's HMAC signature is right.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from noetl.server.triggers import signature
from support.cluster import Cluster, free_port, healthy, running_cluster, spawn, wait_until

from .cluster import completed, register

SECRET = "a-long-enough-test-secret"


@pytest.fixture(scope="module")
def cluster(pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("sched-cron")
    env = {"NOETL_SCHEDULER_TICK": "0.2"}
    with running_cluster(pg_database, root, workers=1, concurrency=4, env=env) as running:
        yield running


def noetl(cluster: Cluster, *args: str, url: str | None = None) -> str:
    env = {**cluster.env, "NOETL_SERVER_URL": url or cluster.url}
    done = subprocess.run([sys.executable, "-m", "noetl", *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def schedules(url: str) -> dict[str, Any]:
    try:
        body: dict[str, Any] = httpx.get(f"{url}/api/schedules", timeout=2).json()
    except httpx.TransportError:
        return {"schedules": [], "leader": False}
    return body


def runs(url: str, name: str) -> int:
    found = [s for s in schedules(url)["schedules"] if s["name"] == name]
    return int(found[0]["runs"]) if found else 0


def test_schedules_fire_and_survive_the_loss_of_the_leader(cluster: Cluster) -> None:
    second_port = free_port()  # not cluster.port + 1: that one may be taken
    second_url = f"http://127.0.0.1:{second_port}"
    first = cluster.server
    second = spawn("scheduler-b", ["server", "start", "--port", str(second_port)], cluster.env, cluster.root)
    cluster.processes.append(second)
    wait_until(lambda: healthy(second_url, second), "the second server")

    path = register(cluster.url, "sched_report.yaml")
    noetl(cluster, "schedule", "add", path, "--name", "every-second", "--cron", "* * * * * *",
          "--payload", '{"source": "cron", "rows": [1, 2]}')  # fmt: skip
    noetl(cluster, "schedule", "add", path, "--name", "interval", "--interval", "1s", "--misfire", "skip")
    wait_until(lambda: runs(cluster.url, "every-second") >= 2 and runs(cluster.url, "interval") >= 2, "runs")
    listed = noetl(cluster, "schedule", "list")
    assert "every-second" in listed and "* * * * * *" in listed

    last = schedules(cluster.url)["schedules"][0]["last_execution_id"]
    assert completed(cluster.url, last)["result"] == {"source": "cron", "total": 3}

    leaders = [u for u in (cluster.url, second_url) if schedules(u)["leader"]]
    assert len(leaders) == 1
    leader = leaders[0]
    survivor = second_url if leader == cluster.url else cluster.url
    (first if leader == cluster.url else second).kill()
    before = runs(survivor, "every-second"), runs(survivor, "interval")
    wait_until(lambda: schedules(survivor)["leader"], "the surviving server to lead", timeout=30)
    wait_until(
        lambda: (
            runs(survivor, "every-second") >= before[0] + 2 and runs(survivor, "interval") >= before[1] + 2
        ),
        "schedules to keep firing after failover",
    )

    noetl(cluster, "schedule", "pause", "interval", url=survivor)
    paused = next(s for s in schedules(survivor)["schedules"] if s["name"] == "interval")
    assert paused["paused"] is True
    noetl(cluster, "schedule", "resume", "interval", url=survivor)
    noetl(cluster, "schedule", "delete", "every-second", url=survivor)
    assert [s["name"] for s in schedules(survivor)["schedules"]] == ["interval"]


def test_a_webhook_starts_an_execution_only_with_a_valid_signature(cluster: Cluster) -> None:
    url = cluster.url
    if not healthy_or_false(cluster):
        cluster.start_server()
    path = register(url, "sched_report.yaml")
    noetl(cluster, "trigger", "add", "report-hook", path, "--secret", SECRET, url=url)
    body = json.dumps({"source": "webhook", "rows": [4, 5, 6]}).encode()

    def post(headers: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{url}/api/triggers/report-hook", content=body, headers=headers, timeout=10)

    unsigned = post({})
    forged = post({"X-NoETL-Signature": signature("not-the-secret-at-all", body)})
    assert (unsigned.status_code, forged.status_code) == (401, 401)
    assert "signature" in forged.json()["detail"]["reason"]
    fired = [t for t in httpx.get(f"{url}/api/triggers").json()["triggers"] if t["name"] == "report-hook"]
    assert fired[0]["fired"] == 0

    good = post({"X-NoETL-Signature": signature(SECRET, body)})
    assert good.status_code == 200, good.text
    outcome = completed(url, good.json()["execution_id"])
    assert outcome["result"] == {"source": "webhook", "total": 15}


def healthy_or_false(cluster: Cluster) -> bool:
    try:
        return healthy(cluster.url, cluster.server)
    except AssertionError:
        return False
