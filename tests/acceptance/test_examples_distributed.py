"""Every example runs on the distributed runtime as its header says (``noetl run --runtime distributed``).

The same cases as ``test_examples.py`` (each ``# expect:`` must be a subset of the --json outcome),
through one server and workers on this module's fresh database, deployed as the scheduling
examples' headers ask: a worker for pool ``gpu`` with ``--resources gpu=1,memory_mb=8000`` next to
the two default workers, and the global resource ``pg_pool`` set to 2.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_examples import ROOT, mismatches, read_header, rel, run_cases

from support.cluster import Cluster, running_cluster, spawn, wait_until, workers_registered


@pytest.fixture(scope="module")
def cluster(pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    files = tmp_path_factory.mktemp("example-files")  # the file tool's root on the workers
    env = {"NOETL_FILE_ROOTS": str(files)}
    with running_cluster(pg_database, tmp_path_factory.mktemp("examples"), env=env) as running:
        args = ["worker", "start", "--pool", "gpu", "--resources", "gpu=1,memory_mb=8000", "--name", "gpu"]
        running.processes.append(spawn("worker-gpu", args, running.env, running.root))
        wait_until(lambda: workers_registered(running.url) >= 3, "the gpu worker")
        done = noetl(running, "resource", "set", "pg_pool", "2")
        assert done.returncode == 0, done.stderr
        yield running


def noetl(
    cluster: Cluster, *args: str, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "noetl", *args]
    env = cluster.env | (extra or {})
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("path", "index"), run_cases())
def test_example_runs_distributed_as_its_header_says(
    cluster: Cluster, path: Path, index: int, request: pytest.FixtureRequest
) -> None:
    header = read_header(path)
    case = header.cases[index]
    extra = request.getfixturevalue("example_services") if header.needs else None
    proc = noetl(cluster, "run", rel(path), "--runtime", "distributed", "--json", *case.args, extra=extra)
    assert proc.stdout.strip(), f"no outcome on stdout (exit {proc.returncode}); stderr:\n{proc.stderr}"
    outcome = json.loads(proc.stdout)
    context = f"{rel(path)} {' '.join(case.args)}\nerror: {outcome.get('error')}\nstderr:\n{proc.stderr}"
    assert proc.returncode == (0 if outcome["status"] == "COMPLETED" else 1), context
    for expected in case.expects:
        problems = mismatches(expected, outcome)
        assert not problems, "\n".join(problems) + "\n" + context
    if case.steps is not None:
        assert Counter(outcome["executed_steps"]) == Counter(case.steps), context
