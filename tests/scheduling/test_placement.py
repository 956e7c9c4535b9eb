"""Placement of commands from the playbook's scheduling keys (pure): pool, priority, key, needs;
and the parser's checks of those keys."""

from __future__ import annotations

import pytest

from noetl.dsl import parser
from noetl.engine import events as ev
from noetl.errors import PlaybookError, UsageError
from noetl.runtime import placement

PLAYBOOK = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: placed, path: tests/placed}
executor:
  spec:
    priority: 5
    max_concurrent_executions: 3
    pools: {python: cpu}
workflow:
  - step: start
    spec: {pool: gpu, priority: 2, resources: {gpu: 1, memory_mb: 2048}}
    tool: {kind: noop}
  - step: crunch
    spec: {concurrency_key: "{{ tenant }}", concurrency_limit: 4}
    tool: {kind: python, code: "result = 1"}
  - step: fetch
    tool: {kind: http, url: "http://example.invalid"}
"""


def command(step: str, priority: int = 0) -> ev.Command:
    return ev.Command("1:1", "1", step, {"tenant": "acme"}, None, 1, priority)


def test_pool_by_spec_then_executor_kind_then_deployment_default() -> None:
    playbook = parser.parse(PLAYBOOK)
    deployment = {"http": "io", "python": "ignored"}
    assert placement.pool(playbook, playbook.steps["start"], deployment) == "gpu"
    assert placement.pool(playbook, playbook.steps["crunch"], deployment) == "cpu"
    assert placement.pool(playbook, playbook.steps["fetch"], deployment) == "io"
    assert placement.pool(playbook, playbook.steps["fetch"], {}) == "default"


def test_priority_adds_the_step_to_the_execution() -> None:
    playbook = parser.parse(PLAYBOOK)
    assert placement.priority(playbook, None, command("start", 2)) == 7
    assert placement.priority(playbook, 100, command("start", 2)) == 102  # the request's replaces 5


def test_key_and_needs() -> None:
    playbook = parser.parse(PLAYBOOK)
    crunch = playbook.steps["crunch"]
    key = placement.concurrency_key(crunch, {"tenant": "acme"})
    assert key == "acme"
    assert placement.needs(playbook, crunch, key) == {"key_limit": 4, "gate": "tests/placed", "gate_limit": 3}
    start = playbook.steps["start"]
    assert placement.needs(playbook, start, None)["resources"] == {"gpu": 1, "memory_mb": 2048}


def test_plain_step_has_no_needs() -> None:
    playbook = parser.parse(PLAYBOOK.replace("max_concurrent_executions: 3", "priority: 0").replace(
        "    priority: 5\n", ""))  # fmt: skip
    assert placement.needs(playbook, playbook.steps["fetch"], None) is None


def test_bad_resources_name_the_step_and_field() -> None:
    text = PLAYBOOK.replace("gpu: 1, memory_mb", "gpu: lots, memory_mb")
    with pytest.raises(PlaybookError) as caught:
        parser.parse(text)
    assert caught.value.step == "start"
    assert caught.value.field == "spec.resources.gpu"


def test_unknown_step_spec_key_is_still_rejected() -> None:
    with pytest.raises(PlaybookError, match="poool"):
        parser.parse(PLAYBOOK.replace("spec: {pool: gpu", "spec: {poool: gpu"))


def test_pools_by_kind_setting() -> None:
    assert placement.kind_pools("python=cpu, http=io") == {"python": "cpu", "http": "io"}
    with pytest.raises(UsageError, match="KIND=POOL"):
        placement.kind_pools("python")
