"""Each legacy generation runs with the same outcome as its ``noetl migrate`` rewrite (issue 6).

One fixture per generation and construct family lives in ``fixtures/``; each opens with
``# expect: {...}`` lines (a JSON object that must be a subset of the ``noetl run --json`` outcome)
and optionally ``# steps: a, b`` (the executed steps in any order, for fan-out). For every
fixture, as a user would run it:

1. ``noetl validate`` accepts it and lists the rewrites; ``--strict`` rejects it;
2. ``noetl migrate`` prints canonical YAML that ``--strict`` accepts with no warning;
3. the original and the migrated file both run to the expected outcome, and to the same outcome
   (status, steps, step results, final result, variables, error).

The fixture that writes to PostgreSQL gets a fresh database (``pg_database``) through a credentials
file, as ``noetl run --credentials`` takes it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
NEEDS_POSTGRES = {"g0_save.yaml"}
COMPARED = ("status", "step_results", "final_result", "variables", "error")


def noetl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "noetl", *args], capture_output=True, text=True, timeout=120, check=False
    )


def header(path: Path) -> tuple[list[dict[str, Any]], list[str] | None]:
    expects: list[dict[str, Any]] = []
    steps: list[str] | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("# ")
        if text.startswith("expect:"):
            expects.append(json.loads(text.removeprefix("expect:")))
        elif text.startswith("steps:"):
            steps = [s.strip() for s in text.removeprefix("steps:").split(",")]
    return expects, steps


def is_subset(expected: Any, actual: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and is_subset(v, actual[k]) for k, v in expected.items()
        )
    return bool(expected == actual)


def run(path: Path, credentials: Path | None) -> dict[str, Any]:
    args = ["run", str(path), "--json"]
    if credentials is not None:
        args += ["--credentials", str(credentials)]
    done = noetl(*args)
    assert done.stdout, done.stderr
    outcome: dict[str, Any] = json.loads(done.stdout)
    return outcome


def comparable(outcome: dict[str, Any]) -> dict[str, Any]:
    """The parts of an outcome that do not depend on ids, clocks or tracebacks."""
    view = {key: outcome[key] for key in COMPARED}
    view["executed_steps"] = sorted(outcome["executed_steps"])
    return json.loads(json.dumps(view).replace(outcome["execution_id"], "<id>"))


@pytest.fixture(scope="module")
def credentials(pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("creds") / "credentials.yaml"
    path.write_text(json.dumps({"pg": {"type": "postgres", "data": {"dsn": pg_database}}}), encoding="utf-8")
    return path


FILES = sorted(p.name for p in FIXTURES.glob("*.yaml"))


def test_every_generation_has_a_fixture() -> None:
    prefixes = {name.split("_")[0] for name in FILES}
    assert prefixes == {"g0", "g1", "g2", "g3"}


@pytest.mark.parametrize("name", FILES)
def test_legacy_and_migrated_run_alike(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    original = FIXTURES / name
    creds: Path | None = request.getfixturevalue("credentials") if name in NEEDS_POSTGRES else None

    checked = noetl("validate", "--json", str(original))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(checked.stdout)["warnings"], "a legacy fixture must need rewrites"
    assert noetl("validate", "--strict", str(original)).returncode == 2

    migrated = noetl("migrate", str(original))
    assert migrated.returncode == 0, migrated.stderr
    assert "is legacy; rewritten to" in migrated.stderr
    new = tmp_path / name
    new.write_text(migrated.stdout, encoding="utf-8")
    strict = noetl("validate", "--strict", "--json", str(new))
    assert strict.returncode == 0, strict.stdout + strict.stderr
    assert json.loads(strict.stdout)["warnings"] == []

    expects, steps = header(original)
    assert expects, f"{name} has no '# expect:' line"
    outcomes = [run(original, creds), run(new, creds)]
    for outcome in outcomes:
        for expected in expects:
            assert is_subset(expected, outcome), (expected, outcome)
        if steps is not None:
            assert sorted(outcome["executed_steps"]) == sorted(steps)
    assert comparable(outcomes[0]) == comparable(outcomes[1])


@pytest.mark.parametrize("name", FILES)
def test_migrate_is_idempotent_and_keeps_the_header_comments(name: str, tmp_path: Path) -> None:
    copy = tmp_path / name
    source = (FIXTURES / name).read_text(encoding="utf-8")
    copy.write_text(source, encoding="utf-8")
    assert noetl("migrate", "--check", str(copy)).returncode == 1
    written = noetl("migrate", "--write", "-q", str(copy))
    assert written.returncode == 0, written.stderr
    text = copy.read_text(encoding="utf-8")
    assert text != source
    comments = [line for line in source.splitlines() if line.startswith("#")]
    assert text.splitlines()[: len(comments)] == comments
    again = noetl("migrate", "--check", str(copy))
    assert again.returncode == 0 and "already canonical" in again.stderr
