"""Benchmark: long chains of ``noop`` steps (local and distributed), and cancel-to-exit time.

Usage::

    python bench/chain.py                         # 40 / 1,000 / 10,000 steps, local and distributed
    python bench/chain.py --steps 40,1000 --runs 3 --only local
    python bench/chain.py --only cancel           # cancel -> the task's process gone
    python bench/chain.py --json

What is measured (medians of ``--runs`` samples, each checked: COMPLETED, every step ran):

chain local        ``noetl run chain_N.yaml --json`` as a subprocess: wall time, and per step.
chain distributed  one server and two workers (``--concurrency 4``) on a scratch database: the time
                   ``POST /api/execute`` takes to answer, and from the request to the execution's
                   terminal status (polled every 20 ms); per step.
heartbeat          (``--only heartbeat``) the two statements a worker sends per heartbeat, timed.
cancel             a ``shell`` step ``sleep 60`` (its pid recorded): distributed, the time from
                   ``POST /api/executions/ID/cancel`` to the sleep's process being gone (polled
                   every 5 ms); local, from SIGINT to ``noetl run`` to the same.

The per-step figure of the 40-step chain is the baseline the longer chains are compared with
(issue 17's target: within 2x of it at 10,000 steps). Playbooks are generated into a temporary
directory on every run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from distributed import (
    DEFAULT_DATABASE_URL,
    Cluster,
    WrongResult,
    register,
    running_cluster,
    scratch_database,
)

STEPS = (40, 1_000, 10_000)
TIMEOUT = 900.0


def chain_yaml(steps: int, name: str = "chain") -> str:
    """A chain of ``steps`` noop steps, step_k -> step_(k+1)."""
    lines = [
        "apiVersion: noetl.io/v2",
        "kind: Playbook",
        f"metadata: {{name: {name}_{steps}, path: bench/{name}_{steps}}}",
    ]
    lines.append("workflow:")
    for k in range(1, steps + 1):
        lines.append(f"  - step: step_{k}")
        lines.append("    tool: {kind: noop}")
        if k < steps:
            lines.append(f"    next: {{arcs: [{{step: step_{k + 1}}}]}}")
    return "\n".join(lines) + "\n"


def sleeper_yaml(pid_file: Path) -> str:
    return (
        "apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: sleeper, path: bench/sleeper}\n"
        "workflow:\n  - step: start\n"
        f'    tool: {{kind: shell, command: "sleep 60 & echo $! > {pid_file}; wait"}}\n'
    )


def noetl() -> list[str]:
    script = Path(sys.executable).with_name("noetl")
    return [str(script)] if script.exists() else [sys.executable, "-m", "noetl"]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# --------------------------------------------------------------------------- local


def local_chain(steps: int, runs: int, work: Path) -> dict[str, Any]:
    path = work / f"chain_{steps}.yaml"
    path.write_text(chain_yaml(steps))
    samples: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(
            [*noetl(), "run", str(path), "--json"], capture_output=True, text=True, timeout=TIMEOUT
        )
        seconds = time.perf_counter() - start
        outcome = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
        if done.returncode != 0 or outcome.get("status") != "COMPLETED":
            raise WrongResult(f"local chain of {steps}: exit {done.returncode}: {done.stderr[-500:]}")
        samples.append(seconds)
    wall = median(samples)
    return {
        "steps": steps,
        "runtime": "local",
        "seconds": wall,
        "per_step_ms": wall / steps * 1000,
        "samples": samples,
    }


def local_cancel(runs: int, work: Path) -> dict[str, Any]:
    samples: list[float] = []
    for n in range(runs):
        pid_file = work / f"local_sleeper_{n}.pid"
        path = work / f"sleeper_{n}.yaml"
        path.write_text(sleeper_yaml(pid_file))
        proc = subprocess.Popen(
            [*noetl(), "run", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        pid = _wait_pid(pid_file)
        start = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        _wait_gone(pid)
        samples.append(time.perf_counter() - start)
        proc.wait(timeout=60)
    return {
        "runtime": "local",
        "what": "SIGINT -> task process gone",
        "seconds": median(samples),
        "samples": samples,
    }


def in_process(steps: int, runs: int, work: Path) -> dict[str, Any]:
    """Load and execute the chain in a child process on a warm LocalRuntime: wall and CPU time of
    the load (YAML -> Playbook) and of the execution, per step - the engine's and the runtime's
    own cost, without the interpreter's start (which dominates a 40-step ``noetl run``)."""
    path = work / f"chain_{steps}.yaml"
    path.write_text(chain_yaml(steps))
    done = subprocess.run(
        [sys.executable, __file__, "--one", str(path), "--runs", str(runs)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    if done.returncode != 0:
        raise WrongResult(f"in-process chain of {steps}: {done.stderr[-800:]}")
    found: dict[str, Any] = json.loads(done.stdout)
    found.update(steps=steps, runtime="in-process")
    found["per_step_ms"] = found["execute_cpu_ms"] / steps
    found["load_per_step_ms"] = found["load_cpu_ms"] / steps
    return found


def one(path: Path, runs: int) -> dict[str, Any]:
    import asyncio

    from noetl.runtime import loader
    from noetl.runtime.local import LocalRuntime

    wall, cpu = time.perf_counter(), time.process_time()
    playbook = loader.load(path)
    load = (time.perf_counter() - wall, time.process_time() - cpu)

    async def execute() -> list[tuple[float, float]]:
        timings = []
        async with LocalRuntime() as runtime:
            for n in range(runs + 1):
                wall, cpu = time.perf_counter(), time.process_time()
                execution = await runtime.execute(playbook, {})
                if execution.state.status != "COMPLETED" or len(execution.state.executed) != len(
                    playbook.workflow
                ):
                    raise WrongResult(f"{path}: {execution.state.status}")
                if n:  # the first run warms up
                    timings.append((time.perf_counter() - wall, time.process_time() - cpu))
        return timings

    timings = asyncio.run(execute())
    return {
        "load_wall_ms": load[0] * 1000,
        "load_cpu_ms": load[1] * 1000,
        "execute_wall_ms": median([t[0] for t in timings]) * 1000,
        "execute_cpu_ms": median([t[1] for t in timings]) * 1000,
    }


# --------------------------------------------------------------------------- distributed


def distributed_chain(cluster: Cluster, steps: int, runs: int) -> dict[str, Any]:
    catalog_id = register(cluster, chain_yaml(steps))
    answered: list[float] = []
    finished: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        response = cluster.http.post("/api/execute", json={"catalog_id": catalog_id}, timeout=TIMEOUT)
        answered.append(time.perf_counter() - start)
        if response.status_code != 200:
            raise WrongResult(f"execute failed ({response.status_code}): {response.text[:300]}")
        execution_id = str(response.json()["execution_id"])
        status = _wait_terminal(cluster, execution_id, start + TIMEOUT)
        finished.append(time.perf_counter() - start)
        if status["status"] != "COMPLETED" or status["progress"]["completed_steps"] != steps:
            raise WrongResult(f"distributed chain of {steps}: {status['status']} {status['progress']}")
    wall = median(finished)
    return {
        "steps": steps,
        "runtime": "distributed",
        "seconds": wall,
        "per_step_ms": wall / steps * 1000,
        "execute_answer_seconds": median(answered),
        "samples": finished,
    }


def distributed_cancel(cluster: Cluster, runs: int, work: Path) -> dict[str, Any]:
    samples: list[float] = []
    for n in range(runs):
        pid_file = work / f"dist_sleeper_{n}.pid"
        catalog_id = register(cluster, sleeper_yaml(pid_file))
        response = cluster.http.post("/api/execute", json={"catalog_id": catalog_id})
        execution_id = str(response.json()["execution_id"])
        pid = _wait_pid(pid_file)
        start = time.perf_counter()
        cluster.http.post(f"/api/executions/{execution_id}/cancel", json={"reason": "bench"})
        _wait_gone(pid)
        samples.append(time.perf_counter() - start)
        _wait_terminal(cluster, execution_id, time.perf_counter() + 60)
    return {
        "runtime": "distributed",
        "what": "cancel -> task process gone",
        "seconds": median(samples),
        "samples": samples,
    }


def _wait_terminal(cluster: Cluster, execution_id: str, deadline: float) -> dict[str, Any]:
    """Poll the execution's row (cheap) until it ends, then read its status (which folds its log)."""
    path = f"/api/executions/{execution_id}"
    while True:
        detail = cluster.http.get(path, params={"include_events": "false"}, timeout=TIMEOUT).json()
        if detail["status"] != "RUNNING":
            status: dict[str, Any] = cluster.http.get(f"{path}/status", timeout=TIMEOUT).json()
            return status
        if time.perf_counter() > deadline:
            raise WrongResult(f"execution {execution_id} still RUNNING")
        time.sleep(0.02)


def heartbeat_cost(database_url: str, beats: int = 300) -> dict[str, Any]:
    """What one worker's heartbeat costs: the two statements it sends every 5 s by default (extend
    the leases it holds - 16 here, a full default worker - and mark itself alive), timed in a row."""
    import asyncio

    from noetl.store import commands, db, migrate, workers
    from noetl.store.ports import NewCommand

    async def measure() -> float:
        await migrate.apply(database_url)
        conn = await db.connect(database_url)
        try:
            await workers.register(conn, "bench-hb", "bench", ["hb"], 16, "localhost", os.getpid(), {})
            batch = [NewCommand(f"hb:{n}", 1, None, "s", None, {}, pool="hb") for n in range(16)]
            await commands.insert(conn, batch)
            held = [lease.command_id for lease in await commands.claim(conn, "bench-hb", ["hb"], 16, 15.0)]
            start = time.perf_counter()
            for _ in range(beats):
                await commands.heartbeat(conn, "bench-hb", held, 15.0)
                await workers.heartbeat(conn, "bench-hb")
            return (time.perf_counter() - start) / beats
        finally:
            await conn.close()

    seconds = asyncio.run(measure())
    return {
        "what": "heartbeat (16 leases + liveness)",
        "ms_per_beat": seconds * 1000,
        "per_second_at_5s": seconds / 5,
    }


# --------------------------------------------------------------------------- helpers


def _wait_pid(pid_file: Path, timeout: float = 60.0) -> int:
    return int(_until(lambda: pid_file.exists() and pid_file.read_text().strip(), timeout, 0.01))


def _wait_gone(pid: int, timeout: float = 120.0) -> None:
    def gone() -> bool:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return True
        return stat.rsplit(")", 1)[1].split()[0] == "Z"

    _until(gone, timeout, 0.005)


def _until(check: Callable[[], Any], timeout: float, interval: float) -> Any:
    deadline = time.perf_counter() + timeout
    while not (value := check()):
        if time.perf_counter() > deadline:
            raise WrongResult("timed out")
        time.sleep(interval)
    return value


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", default=",".join(map(str, STEPS)), help="chain lengths, e.g. 40,1000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="in-process,local,distributed,cancel")
    parser.add_argument(
        "--database-url", default=os.environ.get("NOETL_TEST_DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # the in-process child
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.one, args.runs)))
        return 0
    lengths = [int(n) for n in args.steps.split(",") if n]
    only = set(args.only.split(","))
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="noetl-chain-") as scratch:
        work = Path(scratch)
        if "in-process" in only:
            for steps in lengths:
                results.append(in_process(steps, args.runs, work))
                _show(results[-1], args.json)
        if "local" in only:
            for steps in lengths:
                results.append(local_chain(steps, args.runs, work))
                _show(results[-1], args.json)
        if "cancel" in only:
            results.append(local_cancel(args.runs, work))
            _show(results[-1], args.json)
        if "heartbeat" in only:
            with scratch_database(args.database_url, "heartbeat") as url:
                results.append(heartbeat_cost(url))
                if not args.json:
                    found = results[-1]
                    print(
                        f"heartbeat: {found['ms_per_beat']:.2f} ms per beat, "
                        f"{found['per_second_at_5s'] * 100:.3f}% of a connection's time at one beat per 5 s",
                        flush=True,
                    )
        if only & {"distributed", "cancel"}:
            with (
                scratch_database(args.database_url, "chain") as url,
                running_cluster(url, work / "cluster", 4) as cluster,
            ):
                if "distributed" in only:
                    for steps in lengths:
                        results.append(distributed_chain(cluster, steps, args.runs))
                        _show(results[-1], args.json)
                if "cancel" in only:
                    results.append(distributed_cancel(cluster, args.runs, work))
                    _show(results[-1], args.json)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


def _show(result: dict[str, Any], quiet: bool) -> None:
    if quiet:
        return
    if result.get("runtime") == "in-process":
        print(
            f"chain in-process {result['steps']:>6} steps: load {result['load_cpu_ms']:.0f} ms CPU "
            f"({result['load_per_step_ms']:.3f} ms/step), execute {result['execute_cpu_ms']:.0f} ms CPU / "
            f"{result['execute_wall_ms']:.0f} ms wall ({result['per_step_ms']:.3f} ms/step CPU)",
            flush=True,
        )
    elif "steps" in result:
        extra = (
            f", execute answered in {result['execute_answer_seconds']:.3f} s"
            if "execute_answer_seconds" in result
            else ""
        )
        print(
            f"chain {result['runtime']:<11} {result['steps']:>6} steps: {result['seconds']:8.2f} s "
            f"({result['per_step_ms']:.2f} ms/step{extra})",
            flush=True,
        )
    else:
        print(
            f"cancel {result['runtime']:<11} {result['what']}: {result['seconds'] * 1000:.0f} ms", flush=True
        )


if __name__ == "__main__":
    sys.exit(main())
