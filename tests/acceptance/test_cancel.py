"""Ctrl-C on ``noetl run`` cancels cleanly: status CANCELLED, in-flight work stopped, exit 1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

PLAYBOOK = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: long}
workflow:
  - step: start
    tool: {kind: noop}
    next: {spec: {mode: inclusive}, arcs: [{step: sleeper}, {step: spinner}]}
  - step: sleeper
    tool: {kind: shell, command: "echo $$ > sleeper.pid; sleep 60"}
  - step: spinner
    tool: {kind: python, code: "import os\\nopen('spinner.pid', 'w').write(str(os.getpid()))\\nwhile True: pass"}
"""


def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); read its state
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_sigint_cancels_execution(tmp_path: Path) -> None:
    pb = tmp_path / "long.yaml"
    pb.write_text(textwrap.dedent(PLAYBOOK))
    events = tmp_path / "events.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "noetl", "run", str(pb), "--json", "--events", str(events)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        sleeper = tmp_path / "sleeper.pid"
        spinner = tmp_path / "spinner.pid"
        wait_for(
            lambda: (
                sleeper.exists()
                and sleeper.read_text().strip()
                and spinner.exists()
                and spinner.read_text().strip()
            ),
            what="both tasks running",
        )
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err
    outcome = json.loads(out)
    assert outcome["status"] == "CANCELLED"
    assert "Traceback" not in err
    names = [json.loads(line)["event_type"] for line in events.read_text().splitlines()]
    assert names[-1] == "playbook.cancelled"
    assert names.count("command.cancelled") == 2
    for pidfile in (tmp_path / "sleeper.pid", tmp_path / "spinner.pid"):
        pid = int(pidfile.read_text())
        wait_for(lambda pid=pid: not alive(pid), timeout=10, what=f"process {pid} to stop")
