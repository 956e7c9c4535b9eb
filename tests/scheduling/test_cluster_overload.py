"""Back-pressure with a real server and real workers: 429 beyond the queue bound, nothing lost.

The server bounds each pool's ready commands at 6 (NOETL_MAX_QUEUE_DEPTH). Every execution's first
step waits for a gate file, so the 4 worker slots fill up and the queue grows until the server
refuses: 120 requests from 6 threads get 200 or 429 (with Retry-After). Once the gate opens every
accepted execution must complete. The CLI, refused while the queue is full, says so and retries
until it gets in.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.cluster import Cluster, running_cluster, wait_until

from .cluster import completed

GATED = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {{name: gated, path: tests/gated}}
workload: {{n: 0}}
workflow:
  - step: start
    tool:
      kind: shell
      command: 'while [ ! -e {gate} ]; do sleep 0.02; done; echo {{{{ n }}}}'
"""


@pytest.fixture(scope="module")
def cluster(pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("sched-overload")
    env = {"NOETL_MAX_QUEUE_DEPTH": "6", "NOETL_RETRY_AFTER_SECONDS": "1"}
    with running_cluster(pg_database, root, workers=2, concurrency=2, env=env) as running:
        yield running


def test_overload_is_refused_with_429_and_every_accepted_execution_completes(
    cluster: Cluster, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    httpx.post(
        f"{cluster.url}/api/catalog/register", json={"content": GATED.format(gate=gate)}
    ).raise_for_status()
    accepted: list[str] = []
    rejected: list[httpx.Response] = []
    lock = threading.Lock()

    def submit(first: int) -> None:
        with httpx.Client(base_url=cluster.url, timeout=30) as http:
            for n in range(first, first + 20):
                answer = http.post("/api/execute", json={"path": "tests/gated", "payload": {"n": n}})
                with lock:
                    if answer.status_code == 429:
                        rejected.append(answer)
                    else:
                        answer.raise_for_status()
                        accepted.append(answer.json()["execution_id"])

    threads = [threading.Thread(target=submit, args=(k * 20,)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # the CLI while the queue is still full: refused, it says so and retries
    log = tmp_path / "cli.log"
    with log.open("wb") as out:
        cli = subprocess.Popen(
            [sys.executable, "-m", "noetl", "exec", "tests/gated", "--set", "n=999"],
            env=cluster.env, stdout=subprocess.PIPE, stderr=out,
        )  # fmt: skip
        wait_until(lambda: "server busy" in log.read_text(), "the CLI to report that the server is busy")
        gate.touch()
        stdout, _ = cli.communicate(timeout=120)
    assert cli.returncode == 0, log.read_text()
    accepted.append(stdout.decode().strip())

    outcomes = [completed(cluster.url, execution_id, timeout=120) for execution_id in accepted]
    print(
        f"\noverload: {len(accepted) + len(rejected) - 1} requests + 1 CLI exec: accepted {len(accepted)}, "
        f"rejected {len(rejected)} (429), completed {sum(o['status'] == 'COMPLETED' for o in outcomes)}"
    )
    assert rejected, "the queue bound never refused a request"
    assert all(r.headers.get("Retry-After") == "1" for r in rejected)
    assert "commands waiting" in rejected[0].json()["detail"]["reason"]
    assert len(accepted) >= 6 + 4
    assert len(accepted) + len(rejected) == 121
    assert len(set(accepted)) == len(accepted)
