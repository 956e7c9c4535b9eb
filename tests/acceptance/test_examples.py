"""The playbooks in examples/ run as their headers say, and validate cleanly.

Every example opens with a comment header; these lines in it are read here:

    # args: --set region=eu         starts a case: the arguments given to `noetl run` (shell syntax)
    # expect: {"status": ...}       a JSON object that must be a subset of the --json outcome
    # steps: start, a, b            the executed steps, in any order (for parallel branches)
    # legacy: yes                   the file uses legacy syntax on purpose
    # needs: s3, nats               services the example talks to: the test serves them (moto for S3,
                                    NATS, ClickHouse) and passes their credentials in NOETL_CREDENTIALS_FILE

``expect`` and ``steps`` lines belong to the case above them; before any ``args`` line they belong
to a case without arguments. "Subset" is recursive for objects (every expected key is present with a
matching value); lists and scalars must be equal. Files under examples/lib/ are sub-playbooks: they
are always validated and run only when their header has cases. ``examples/creds/`` holds a credentials file, not
a playbook; it is left to the docs test.

Canonical examples must validate with no warnings, also under ``--strict``; a ``legacy: yes`` file
must validate with warnings and be rejected by ``--strict``.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@dataclass
class Case:
    args: list[str]
    expects: list[dict[str, Any]] = field(default_factory=list)
    steps: list[str] | None = None


@dataclass
class Header:
    cases: list[Case]
    legacy: bool
    needs: list[str] = field(default_factory=list)


def playbook_files() -> list[Path]:
    top = [p for p in sorted(EXAMPLES.glob("*.yaml")) if not p.name.endswith(".example.yaml")]
    return top + sorted((EXAMPLES / "lib").glob("*.yaml"))


def read_header(path: Path) -> Header:
    """The cases and flags of the leading comment block of ``path``."""
    cases: list[Case] = []
    legacy = False
    needs: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        key, _, value = line.lstrip("# ").partition(":")
        value = value.strip()
        if key == "args":
            cases.append(Case(shlex.split(value)))
        elif key in ("expect", "steps") and not cases:
            cases.append(Case([]))
        if key == "expect":
            cases[-1].expects.append(json.loads(value))
        elif key == "steps":
            cases[-1].steps = [name.strip() for name in value.split(",")]
        elif key == "legacy":
            legacy = value.lower() in ("yes", "true")
        elif key == "needs":
            needs = [name.strip() for name in value.split(",") if name.strip()]
    return Header(cases, legacy, needs)


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def run_cases() -> list[Any]:
    params = []
    for path in playbook_files():
        for index, case in enumerate(read_header(path).cases):
            label = " ".join(case.args) or "defaults"
            params.append(pytest.param(path, index, id=f"{rel(path)}[{label}]"))
    return params


def noetl(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m noetl ARGS`` from the repository root, without NOETL_* settings of the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOETL_")} | (extra or {})
    command = [sys.executable, "-m", "noetl", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def mismatches(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where ``expected`` is not a subset of ``actual`` (empty when it is)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path or '.'}: expected an object, got {json.dumps(actual)}"]
        problems = []
        for key, value in expected.items():
            where = f"{path}.{key}" if path else key
            if key not in actual:
                problems.append(f"{where}: missing (present: {', '.join(map(str, actual)) or 'nothing'})")
            else:
                problems.extend(mismatches(value, actual[key], where))
        return problems
    if expected != actual or type(expected) is not type(actual):
        return [f"{path or '.'}: expected {json.dumps(expected)}, got {json.dumps(actual)}"]
    return []


def test_every_example_states_what_it_should_produce() -> None:
    top_level = [p for p in playbook_files() if p.parent == EXAMPLES]
    assert len(top_level) >= 7
    for path in top_level:
        cases = read_header(path).cases
        assert cases, f"{rel(path)} has no '# expect:' line in its header"
        for case in cases:
            assert case.expects, f"{rel(path)}: the case with args {case.args} has no '# expect:' line"
            assert any("status" in e for e in case.expects), f"{rel(path)}: args {case.args} expect no status"


@pytest.mark.parametrize(("path", "index"), run_cases())
def test_example_runs_as_its_header_says(path: Path, index: int, request: pytest.FixtureRequest) -> None:
    header = read_header(path)
    case = header.cases[index]
    extra = request.getfixturevalue("example_services") if header.needs else None
    proc = noetl("run", rel(path), "--json", *case.args, extra=extra)
    assert proc.stdout.strip(), f"no outcome on stdout (exit {proc.returncode}); stderr:\n{proc.stderr}"
    outcome = json.loads(proc.stdout)
    context = f"{rel(path)} {' '.join(case.args)}\nerror: {outcome.get('error')}\nstderr:\n{proc.stderr}"
    assert proc.returncode == (0 if outcome["status"] == "COMPLETED" else 1), context
    for expected in case.expects:
        problems = mismatches(expected, outcome)
        assert not problems, "\n".join(problems) + "\n" + context
    if case.steps is not None:
        assert Counter(outcome["executed_steps"]) == Counter(case.steps), context


def validation(*flags: str) -> dict[str, dict[str, Any]]:
    """``noetl validate --json FLAGS`` over every playbook file: file -> its report."""
    proc = noetl("validate", "--json", *flags, *(rel(p) for p in playbook_files()))
    reports = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return {report["file"]: report for report in reports}


def test_examples_validate_without_warnings_and_legacy_ones_warn() -> None:
    reports = validation()
    for path in playbook_files():
        report = reports[rel(path)]
        assert report["valid"], f"{rel(path)}: {report.get('error')}"
        if read_header(path).legacy:
            assert report["warnings"], f"{rel(path)} is marked legacy but loads without rewrites"
        else:
            assert report["warnings"] == [], f"{rel(path)} uses legacy syntax: {report['warnings']}"


def test_strict_validation_accepts_canonical_examples_and_rejects_legacy_ones() -> None:
    reports = validation("--strict")
    for path in playbook_files():
        report = reports[rel(path)]
        legacy = read_header(path).legacy
        assert report["valid"] is not legacy, f"{rel(path)}: strict validation gave {report}"
        if legacy:
            assert "strict" in report["error"]["message"]
