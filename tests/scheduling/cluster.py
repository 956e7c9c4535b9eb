"""Helpers for the scheduling tests that drive a real cluster (server + worker processes) over HTTP."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from support.cluster import Cluster, service_token, spawn, wait_until, workers_registered

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DEADLINE = 60.0


def register(url: str, example: str) -> str:
    content = (EXAMPLES / example).read_text(encoding="utf-8")
    answer = httpx.post(f"{url}/api/catalog/register", json={"content": content}, timeout=10)
    answer.raise_for_status()
    return str(answer.json()["path"])


def execute(url: str, path: str, payload: dict[str, Any] | None = None, **extra: Any) -> str:
    answer = httpx.post(
        f"{url}/api/execute", json={"path": path, "payload": payload or {}, **extra}, timeout=10
    )
    answer.raise_for_status()
    return str(answer.json()["execution_id"])


def status(url: str, execution_id: str) -> dict[str, Any]:
    answer = httpx.get(f"{url}/api/executions/{execution_id}/status", timeout=10)
    answer.raise_for_status()
    body: dict[str, Any] = answer.json()
    return body


def finished(url: str, execution_id: str, timeout: float = DEADLINE) -> dict[str, Any]:
    """The execution's status once it is no longer RUNNING."""

    def check() -> dict[str, Any] | None:
        found = status(url, execution_id)
        return found if found["status"] != "RUNNING" else None

    found: dict[str, Any] = wait_until(check, f"execution {execution_id} to finish", timeout)
    return found


def completed(url: str, execution_id: str, timeout: float = DEADLINE) -> dict[str, Any]:
    found = finished(url, execution_id, timeout)
    assert found["status"] == "COMPLETED", found
    return found


def add_worker(cluster: Cluster, name: str, *args: str) -> None:
    """One more ``noetl worker start`` process with ``args`` (pools, resources, concurrency)."""
    before = workers_registered(cluster.url, service_token(cluster.env))
    command = ["worker", "start", "--grace", "1", "--name", name, *args]
    cluster.processes.append(spawn(f"worker-{name}", command, cluster.env, cluster.root))
    wait_until(lambda: workers_registered(cluster.url, service_token(cluster.env)) > before, f"worker {name}")


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (ends sort before starts at equal times)."""
    edges = sorted(
        [(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1])
    )
    most = current = 0
    for _, step in edges:
        current += step
        most = max(most, current)
    return most


def now() -> float:
    return time.monotonic()
