"""Upstream's own fixture playbooks run as they document (issue 18), when a copy of them is given.

``NOETL_E2E_CORPUS`` names a directory holding a copy of the public ``noetl/e2e`` repository
(fetched outside this repository; none of its files are committed here). The test runs
``bench/corpus_run.py`` over it, exactly as a person would, and requires at least
``DOCUMENTED_FLOOR`` of the runs to behave as the fixtures' own comments, READMEs and assertions
say. Without the variable the test is skipped with a message saying how to run it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Runs (of 91 at upstream's commit 1e41859) that must behave as documented: 34 at the start of
#: issue 18, 69 measured at its end (strict templates); the floor leaves room for the fixtures that
#: are random by design (retry_test/python_retry_exception fails 17 % of runs upstream as well).
DOCUMENTED_FLOOR = 66


pytestmark = pytest.mark.skipif(
    not os.environ.get("NOETL_E2E_CORPUS"),
    reason="set NOETL_E2E_CORPUS to a copy of github.com/noetl/e2e (outside this repository) to run its fixtures",
)


def _corpus() -> Path:
    value = os.environ["NOETL_E2E_CORPUS"]
    path = Path(value)
    if not (path / "fixtures" / "playbooks").is_dir():
        pytest.fail(f"NOETL_E2E_CORPUS={value} holds no fixtures/playbooks directory")
    return path


def test_upstream_fixtures_run_as_documented(pg_server_url: str) -> None:
    corpus = _corpus()
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "corpus_run.py"),
            str(corpus),
            "--json",
            "--database-url",
            pg_server_url,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=3600,
    )
    runs = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert runs, done.stderr
    misses = [
        f"{r['path']} [{r['label']}]: expected {r['expected']}, got {r['got']}: {r['why']}"
        for r in runs
        if not r["ok"]
    ]
    passed = len(runs) - len(misses)
    assert passed >= DOCUMENTED_FLOOR, f"{passed} of {len(runs)} as documented; misses:\n" + "\n".join(misses)
