"""Benchmark: the web UI - time to first render, and the server's CPU under live watchers.

Run by hand, never from the test suite (it needs PostgreSQL, Debian's chromium and PyPI playwright):

    .venv/bin/python bench/ui.py                    # all three measurements, 5 page loads each
    .venv/bin/python bench/ui.py --runs 9 --clients 20 --watch-seconds 20

It creates its own database on ``NOETL_BENCH_DATABASE_URL`` (default: the machine's PostgreSQL,
``postgresql://postgres@127.0.0.1:5432/postgres``), starts a server (``--insecure-loopback``, so
the browser talks to it directly) and one worker, and measures:

1. **List**: 100,000 executions (rows inserted directly: the list reads only the ``execution``
   table); time from navigation start to the first row of ``#/executions`` in chromium.
2. **Execution page**: a real run of a playbook whose loop has 10,000 items (``noop`` tasks); time
   from navigation start to the graph (with the loop's counts), and to the event table's rows.
3. **Watchers**: the server's CPU (user + system from ``/proc``) while an execution runs a long loop,
   with no watcher and then with ``--clients`` event-stream clients on that execution (each reads
   and parses every batch as the page does; real browsers would cost the machine more than the
   server). The difference is what the watchers cost the server.

Targets (issue 14): each first render under 1 s. Output: a table, or ``--json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
TICKS = os.sysconf("SC_CLK_TCK")

LOOP = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: bench_loop, path: bench/loop}
workload: {n: 10000, flight: 64}
workflow:
  - step: start
    tool: {kind: noop}
    next: {arcs: [{step: fanout}]}
  - step: fanout
    loop:
      in: "{{ n }}"
      iterator: i
      spec: {mode: parallel, max_in_flight: "{{ flight }}"}
    tool: {kind: noop}
    next: {arcs: [{step: end}]}
  - step: end
    tool: {kind: noop}
"""

SLOW_LOOP = """
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: bench_watch, path: bench/watch}
workload: {n: 100000}
workflow:
  - step: fanout
    loop:
      in: "{{ n }}"
      iterator: i
      spec: {mode: parallel, max_in_flight: 8}
    tool: {kind: noop}
"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Any, what: str, timeout: float = 600.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


@contextmanager
def database(base: str) -> Iterator[str]:
    name = f"bench_ui_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(base)
    try:
        yield urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def cluster(database_url: str, root: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOETL_")}
    env.update(
        NOETL_DATABASE_URL=database_url,
        NOETL_DATA_DIR=str(root / "data"),
        NOETL_SERVER_URL=url,
        NOETL_LOG_LEVEL="warning",
        NOETL_SERVER_INSECURE_LOOPBACK="true",
    )
    logs = [open(root / f"{n}.log", "wb") for n in ("server", "worker")]  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "-m", "noetl", "server", "start", "--port", str(port), "--insecure-loopback"],
        env=env,
        stdout=logs[0],
        stderr=subprocess.STDOUT,
    )
    worker = None
    try:
        wait_until(lambda: _ok(f"{url}/health"), "the server")
        worker = subprocess.Popen(
            [sys.executable, "-m", "noetl", "worker", "start", "--concurrency", "16", "--name", "bench"],
            env=env,
            stdout=logs[1],
            stderr=subprocess.STDOUT,
        )
        yield url, server
    finally:
        for process in (worker, server):
            if process is not None:
                process.terminate()
        for process in (worker, server):
            if process is not None:
                process.wait(timeout=30)
        for log in logs:
            log.close()


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def seed_executions(database_url: str, count: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO noetl.execution (execution_id, path, status, error, created_at, updated_at,
                                         completed_at)
            SELECT i, 'team_' || (i %% 50) || '/job_' || (i %% 7),
                   (ARRAY['COMPLETED', 'COMPLETED', 'COMPLETED', 'FAILED', 'CANCELLED'])[1 + i %% 5],
                   CASE WHEN i %% 5 = 3 THEN json_build_object('message', 'failed at row ' || i) END,
                   now() - make_interval(secs => (%(n)s - i)::double precision),
                   now() - make_interval(secs => (%(n)s - i)::double precision),
                   now() - make_interval(secs => (%(n)s - i)::double precision)
            FROM generate_series(1, %(n)s) AS i
            """,
            {"n": count},
        )
        conn.execute("ANALYZE noetl.execution")


def api(url: str, method: str, path: str, body: Any = None) -> Any:
    response = httpx.request(method, f"{url}/api/{path}", json=body, timeout=60)
    response.raise_for_status()
    return response.json()


def run_loop(url: str) -> tuple[str, float]:
    api(url, "POST", "catalog/register", {"content": LOOP})
    started = time.monotonic()
    execution_id = str(api(url, "POST", "execute", {"path": "bench/loop"})["execution_id"])

    def done() -> bool:
        row = api(url, "GET", f"executions/{execution_id}?include_events=false")
        return row["status"] in ("COMPLETED", "FAILED", "CANCELLED")

    wait_until(done, "the 10,000-item loop", timeout=1800)
    return execution_id, time.monotonic() - started


def first_render(url: str, fragment: str, selector: str, runs: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    samples = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for _ in range(runs + 1):  # the first load (cold HTTP cache) is not counted
            context = browser.new_context(viewport={"width": 1300, "height": 900})
            page = context.new_page()
            page.goto(f"{url}/ui/{fragment}", wait_until="commit")
            page.wait_for_selector(selector, timeout=60_000)
            samples.append(float(page.evaluate("performance.now()")) / 1000)
            context.close()
        browser.close()
    return samples[1:]


def api_times(url: str, path: str, runs: int) -> list[float]:
    """Wall times of one GET of the page's API call (what the server adds to the first render)."""
    samples = []
    with httpx.Client(timeout=60) as http:
        http.get(f"{url}/api/{path}").raise_for_status()
        for _ in range(runs):
            started = time.perf_counter()
            http.get(f"{url}/api/{path}").raise_for_status()
            samples.append(time.perf_counter() - started)
    return samples


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def watch(url: str, execution_id: str, clients: int, seconds: float, pid: int) -> dict[str, float]:
    received = [0] * clients
    stop = asyncio.Event()

    async def client(n: int) -> None:
        async with (
            httpx.AsyncClient(timeout=None) as http,
            http.stream("GET", f"{url}/api/executions/{execution_id}/stream") as response,
        ):
            data: list[str] = []
            async for line in response.aiter_lines():
                if stop.is_set():
                    return
                if line.startswith("data:"):
                    data.append(line[5:])
                elif not line and data:
                    parsed = json.loads("".join(data))
                    received[n] += len(parsed) if isinstance(parsed, list) else 0
                    data = []

    tasks = [asyncio.create_task(client(n)) for n in range(clients)]
    await asyncio.sleep(2.0)  # every client has caught up with the log so far
    before, at = cpu_seconds(pid), time.monotonic()
    caught_up = sum(received)
    await asyncio.sleep(seconds)
    used, elapsed = cpu_seconds(pid) - before, time.monotonic() - at
    live = sum(received) - caught_up
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"cpu_percent": 100 * used / elapsed, "events_per_client_per_s": live / max(1, clients) / elapsed}


def idle_cpu(pid: int, seconds: float) -> float:
    before, at = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return 100 * (cpu_seconds(pid) - before) / (time.monotonic() - at)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--executions", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--watch-seconds", type=float, default=15.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    base = os.environ.get("NOETL_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    out: dict[str, Any] = {}
    with (
        database(base) as database_url,
        tempfile.TemporaryDirectory() as tmp,
        cluster(database_url, Path(tmp)) as (url, server),
    ):
        seed_executions(database_url, args.executions)
        list_samples = first_render(url, "#/executions", "#executions-body tr[data-id]", args.runs)
        out["list_first_render_s"] = list_samples
        out["list_api_s"] = api_times(url, "executions/search?limit=50", args.runs)
        out["list_api_filtered_s"] = api_times(
            url, "executions/search?limit=50&status=FAILED&path_prefix=team_7/&q=row", args.runs
        )
        execution_id, loop_seconds = run_loop(url)
        out["loop_run_s"] = loop_seconds
        graph = '#graph g.node[data-step="fanout"] text.counts'
        out["execution_graph_s"] = first_render(url, f"#/executions/{execution_id}", graph, args.runs)
        out["snapshot_api_s"] = api_times(url, f"executions/{execution_id}/snapshot", args.runs)
        out["log_api_s"] = api_times(url, f"executions/{execution_id}/log?limit=200", args.runs)
        out["timeline_api_s"] = api_times(url, f"executions/{execution_id}/timeline", args.runs)
        rows = "#events-body tr[data-event]"
        out["execution_events_s"] = first_render(url, f"#/executions/{execution_id}", rows, args.runs)
        api(url, "POST", "catalog/register", {"content": SLOW_LOOP})
        watched = str(api(url, "POST", "execute", {"path": "bench/watch"})["execution_id"])
        time.sleep(3.0)
        out["server_cpu_0_clients"] = idle_cpu(server.pid, args.watch_seconds)
        out["watchers"] = asyncio.run(watch(url, watched, args.clients, args.watch_seconds, server.pid))
        api(url, "POST", f"executions/{watched}/cancel", {})
    out["load_average"] = os.getloadavg()
    report(out, args)
    met = all(statistics.median(out[k]) < 1.0 for k in ("list_first_render_s", "execution_graph_s"))
    return 0 if met else 1


def report(out: dict[str, Any], args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps(out, indent=2))
        return

    def row(name: str, samples: list[float], target: str) -> None:
        med = statistics.median(samples)
        print(
            f"{name:<58} {med * 1000:8.0f} {min(samples) * 1000:8.0f} {max(samples) * 1000:8.0f}   {target}"
        )

    print(f"{'first render (ms, from navigation start)':<58} {'median':>8} {'min':>8} {'max':>8}   target")
    row(f"executions list, {args.executions:,} executions", out["list_first_render_s"], "< 1000")
    row("execution page (10,000-item loop): graph with counts", out["execution_graph_s"], "< 1000")
    row("execution page (10,000-item loop): event table rows", out["execution_events_s"], "")
    row("  API: GET /api/executions/search (first page)", out["list_api_s"], "")
    row("  API: the same with status + path prefix + text filters", out["list_api_filtered_s"], "")
    row("  API: GET .../snapshot (graph + per-step counts)", out["snapshot_api_s"], "")
    row("  API: GET .../log (newest 200 events)", out["log_api_s"], "")
    row("  API: GET .../timeline (300 commands per step)", out["timeline_api_s"], "")
    print(f"the 10,000-item loop itself ran in {out['loop_run_s']:.1f} s")
    print("load average during the run: " + ", ".join(f"{x:.1f}" for x in out["load_average"]))
    watchers = out["watchers"]
    print(
        f"server CPU while an execution runs: {out['server_cpu_0_clients']:.1f} % of a core with no watcher, "
        f"{watchers['cpu_percent']:.1f} % with {args.clients} stream clients "
        f"({watchers['events_per_client_per_s']:.0f} events/s delivered to each)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
