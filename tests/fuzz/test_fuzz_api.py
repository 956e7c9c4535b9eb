"""Schemathesis against a real server's OpenAPI: no request it can generate gets a 5xx.

A real ``noetl server start`` process (tests/support/cluster.py, PostgreSQL, no workers) serves
``/openapi.json``; every operation in it gets a bounded number of generated requests (valid and
invalid), sent with the service token, and must answer below 500. Operations and example counts
are bounded so the CI run stays short; ``HYPOTHESIS_PROFILE=long`` draws many more (docs/testing.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from support.cluster import Cluster, running_cluster

_EXAMPLES = 2_000 if os.environ.get("HYPOTHESIS_PROFILE") == "long" else 10
"""Requests per operation."""
_SKIPPED: dict[str, str] = {}
"""Operations not fuzzed, with the reason (``METHOD /path`` -> why)."""


@pytest.fixture(scope="module")
def cluster(pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root: Path = tmp_path_factory.mktemp("fuzz-api")
    with running_cluster(pg_database, root, workers=0) as running:
        yield running


def _operations(cluster: Cluster) -> list[schemathesis.APIOperation]:
    spec = httpx.get(f"{cluster.url}/openapi.json", headers=cluster.headers(), timeout=30).json()
    schema = schemathesis.openapi.from_dict(spec)
    operations = [result.ok() for result in schema.get_all_operations()]
    return [op for op in operations if op.label not in _SKIPPED]


def test_no_operation_answers_5xx(cluster: Cluster) -> None:
    operations = _operations(cluster)
    assert len(operations) >= 10, "the server's OpenAPI lists too few operations"
    failures: list[str] = []
    with httpx.Client(base_url=cluster.url, headers=cluster.headers(), timeout=30) as client:
        for operation in operations:
            failures.extend(_fuzz(operation, client))
    assert not failures, "5xx answers:\n" + "\n".join(failures)


def _fuzz(operation: schemathesis.APIOperation, client: httpx.Client) -> list[str]:
    """Send generated requests for one operation; the 5xx answers, one line each."""
    found: list[str] = []

    @settings(
        max_examples=_EXAMPLES,
        deadline=None,
        derandomize=os.environ.get("HYPOTHESIS_PROFILE") != "long",
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(case=operation.as_strategy())
    def send(case: schemathesis.Case) -> None:
        request = [case.formatted_path, case.query, case.body, case.headers]
        body = case.body if isinstance(case.body, dict | list) else None
        headers = {**client.headers, **(case.headers or {})}
        # A stream (the SSE endpoints) never ends: only its status line is read.
        with client.stream(
            case.method, case.formatted_path, params=case.query, json=body, headers=headers
        ) as response:
            if response.status_code >= 500 and len(found) < 5:
                response.read()
                found.append(
                    f"{operation.label} {request!r} -> {response.status_code}: {response.text[:300]}"
                )

    send()
    return found


def test_a_nul_character_in_a_text_field_is_a_400(cluster: Cluster) -> None:
    """Finding F1 of the fuzzer: a NUL in a text value PostgreSQL must store answered 500."""
    response = httpx.post(
        f"{cluster.url}/api/commands/claim",
        json={"worker_id": "w\x00"},
        headers=cluster.headers(),
        timeout=30,
    )
    assert response.status_code == 400, response.text
    assert "NUL character" in response.json()["detail"]["message"]
