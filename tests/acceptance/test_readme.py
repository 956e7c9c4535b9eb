"""The README's shell blocks (and the security guide's five-minute block) run as written.

Each ```bash block is taken from the Markdown and run verbatim by ``bash -e`` (plus ``-o pipefail``),
with only what it assumes around it:

* the quick start's install line runs in a fresh copy of the repository with a fresh venv (it
  needs PyPI, as a new user does); its second line is the CI entry point, checked against
  ``.ci/run`` rather than run (it would run this suite inside itself);
* "Running playbooks" runs in a scratch directory holding a copy of ``examples/``;
* "The distributed runtime", "Behind the gateway" and "Scheduling" run together, in that order (the
  later ones use the server the first started), in a network namespace of their own (``unshare -n``): the
  commands' fixed ports 8082 and 8080 are then free whatever else runs on this machine, and
  nothing leaves the namespace. The embedded PostgreSQL lives in a private ``NOETL_DATA_DIR``.
  The environment, not the text, is what the test adapts (``NOETL_DATA_DIR``, ``HOME``, ``PATH``).
* docs/cli.md's distributed quick start runs the same way;
* docs/security.md's five-minute block runs the same way; its ``pip install -e .`` line meets a
  ``pip`` on ``PATH`` that only checks this checkout is the installed one (the install itself is
  the quick start's, tested above).

Servers started with ``&`` are stopped when the block ends (a trap added around it, not in it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SECURITY = ROOT / "docs" / "security.md"
FENCE = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)
BLOCK_TIMEOUT = 300


def bash_blocks(doc: Path) -> dict[str, str]:
    """Each bash block of ``doc`` under the title of the section it appears in."""
    text = doc.read_text(encoding="utf-8")
    found: dict[str, str] = {}
    for match in FENCE.finditer(text):
        headings = re.findall(r"^#+ (.+)$", text[: match.start()], re.M)
        title = headings[-1] if headings else ""
        assert title not in found, f"{doc.name}: two bash blocks under '{title}'"
        found[title] = match.group(1)
    return found


README_BLOCKS = bash_blocks(README)


def can_unshare() -> bool:
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.fixture
def scratch() -> Iterator[Path]:
    # Not under pytest's tmp_path: as root, pgserver runs PostgreSQL as another user, who must
    # reach the data directory (pytest keeps its base directory at mode 0700).
    base = Path(tempfile.mkdtemp(prefix="noetl-readme-"))
    base.chmod(0o755)
    shutil.copytree(ROOT / "examples", base / "examples")
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def environment(scratch: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOETL_")}
    env.update(
        HOME=str(scratch / "home"),
        NOETL_DATA_DIR=str(scratch / "data"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    (scratch / "home").mkdir(exist_ok=True)
    return env


def run_script(
    script: str, cwd: Path, env: dict[str, str], *, isolated: bool
) -> subprocess.CompletedProcess[str]:
    """``script`` under ``bash -e``; background jobs are stopped when it ends; ``isolated`` runs it
    in a network namespace of its own with its loopback up."""
    prologue = "set -eo pipefail\n"
    if isolated:
        prologue += "ip link set lo up\n"
    prologue += (
        'cleanup() { code=$?; set +e; pids=$(jobs -p); [ -z "$pids" ] || kill $pids 2>/dev/null; wait; '
        "exit $code; }\ntrap cleanup EXIT\n"
    )
    (cwd / "block.sh").write_text(prologue + script, encoding="utf-8")
    command = ["bash", str(cwd / "block.sh")]
    if isolated:
        command = ["unshare", "-n", *command]
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT, check=False
    )


def explain(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\n--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-6000:]}"


def test_the_readme_has_the_blocks_this_test_runs() -> None:
    expected = {"NoETL", "Running playbooks", "The distributed runtime", "Behind the gateway", "Scheduling"}
    assert set(README_BLOCKS) == expected  # a new block needs a test here


def test_ci_runs_the_quick_starts_test_line() -> None:
    quick = README_BLOCKS["NoETL"].splitlines()
    test_line = next(line for line in quick if "scripts/check" in line)
    assert "pip install -e '.[test]'" in test_line
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install -q -e '.[test]'" in ci and re.search(r"^scripts/check$", ci, re.M)
    # CI runs the README's path: the embedded PostgreSQL unless the caller gives a URL.
    assert "NOETL_TEST_DATABASE_URL=" not in ci


@pytest.mark.slow
def test_quick_start_install_and_first_run(scratch: Path) -> None:
    line = next(line for line in README_BLOCKS["NoETL"].splitlines() if "pip install -e . " in line)
    checkout = scratch / "noetl"
    ignore = shutil.ignore_patterns(
        ".git", ".venv*", "__pycache__", "*.egg-info", ".mypy_cache", ".ruff_cache"
    )
    shutil.copytree(ROOT, checkout, ignore=ignore)
    env = environment(scratch, PIP_DISABLE_PIP_VERSION_CHECK="1")
    env["PATH"] = env["PATH"].split(os.pathsep, 1)[1]  # a new user's PATH: no venv of ours on it
    done = run_script(line + "\n", checkout, env, isolated=False)
    assert done.returncode == 0, explain(done)
    assert '"region": "eu"' in done.stdout or "COMPLETED" in done.stdout, explain(done)
    # the quick start's venv has the embedded PostgreSQL's package, as the README promises
    venv_python = checkout / ".venv" / "bin" / "python"
    probe = subprocess.run([str(venv_python), "-c", "import pgserver"], capture_output=True, check=False)
    assert probe.returncode == 0, probe.stderr


def test_running_playbooks_block(scratch: Path) -> None:
    done = run_script(README_BLOCKS["Running playbooks"], scratch, environment(scratch), isolated=False)
    assert done.returncode == 0, explain(done)
    assert '"status": "COMPLETED"' in done.stdout, explain(done)
    assert (scratch / "run.jsonl").read_text(encoding="utf-8").count("\n") > 3
    assert "✗" not in done.stderr, explain(done)  # every file given to `noetl validate` is valid
    assert '"$schema"' in done.stdout or '"properties"' in done.stdout


needs_netns = pytest.mark.skipif(
    not can_unshare(), reason="needs `unshare -n` (root or user namespaces) for the fixed ports"
)


@needs_netns
def test_distributed_and_gateway_blocks(scratch: Path) -> None:
    script = "".join(
        README_BLOCKS[t] for t in ("The distributed runtime", "Behind the gateway", "Scheduling")
    )
    done = run_script(script, scratch, environment(scratch), isolated=True)
    assert done.returncode == 0, explain(done)
    out = done.stdout
    assert out.count('"status": "COMPLETED"') >= 1, explain(done)  # the distributed run's outcome
    assert "execution " in out and " COMPLETED" in out, explain(done)  # noetl status $ID
    assert "playbook.completed" in out, explain(done)  # noetl events $ID --follow
    assert '"executions"' in out or "[]" in out or "finance" in out, explain(done)  # the curl
    assert re.search(r"^\d{6,}$", out, re.M), explain(done)  # exec finance/report printed an id
    assert "resource pg_pool" in out, explain(done)  # the scheduling block ran to its end
    # the embedded PostgreSQL did not outlive the server and worker that used it
    assert not (scratch / "data" / "pg" / "postmaster.pid").exists(), explain(done)


@needs_netns
def test_security_five_minute_block(scratch: Path) -> None:
    block = bash_blocks(SECURITY)["Behind the gateway in five minutes"]
    shim = scratch / "shim"
    shim.mkdir()
    (shim / "pip").write_text(
        "#!/bin/sh\n# the install is the quick start's (tested there); check this checkout is the one installed\n"
        f'exec python -c "import noetl, sys; sys.exit(0 if noetl.__file__.startswith({str(ROOT)!r}) else 1)"\n',
        encoding="utf-8",
    )
    (shim / "pip").chmod(0o755)
    env = environment(scratch)
    env["PATH"] = f"{shim}{os.pathsep}{env['PATH']}"
    done = run_script(block, scratch, env, isolated=True)
    assert done.returncode == 0, explain(done)
    assert "finance/report" in done.stdout, explain(done)  # executions list through the gateway


@needs_netns
def test_cli_docs_distributed_block(scratch: Path) -> None:
    block = bash_blocks(ROOT / "docs" / "cli.md")["A distributed quick start"]
    done = run_script(block, scratch, environment(scratch), isolated=True)
    assert done.returncode == 0, explain(done)
    assert '"status": "COMPLETED"' in done.stdout and "playbook.completed" in done.stdout, explain(done)
