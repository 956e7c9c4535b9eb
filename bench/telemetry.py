"""Benchmark of telemetry's cost and the event export's speed (server + 2 workers on PostgreSQL).

Usage::

    python bench/telemetry.py [--runs 3] [--database-url URL] [--json]

Two clusters run the same workloads in one invocation, alternating run by run:

* **off**: no sink configured (the default);
* **on**: every event exported to ClickHouse (Debian's ``clickhouse-server``, started here on free
  ports), execution traces sent over OTLP/HTTP to a receiver in this process, and worker metrics
  pushed to VictoriaMetrics (Debian's ``victoria-metrics``) every second.

W1  a chain of 40 ``python`` steps, 10 executions per run: ms per step.
W3  a parallel loop of 10,000 ``python`` items (max_in_flight 256): items/s.
EXPORT  with telemetry on, during each W3 run the export's lag is sampled (``GET /api/export/status``
    every 0.2 s: the largest lag in events and seconds), and after it the time until every sink has
    caught up; export throughput = events exported / time from the loop's start to caught up.

The overhead is (on - off) / off of the medians; the target is under 5 %. Exit code 0 when met.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import distributed as d  # noqa: E402  (the distributed benchmark's cluster and workloads)

TARGET_OVERHEAD = 0.05
W3_ITEMS = d.QUEUE_ITEMS


# ---- the services telemetry sends to -----------------------------------------------------------------


@contextmanager
def clickhouse(root: Path) -> Iterator[str]:
    """Debian's clickhouse-server on free ports under ``root``; its HTTP URL."""
    binary, config = shutil.which("clickhouse-server"), Path("/etc/clickhouse-server/config.xml")
    if binary is None or not config.exists():
        raise SystemExit("clickhouse-server is not installed (apt-get install clickhouse-server)")
    port = d.free_port()
    text = config.read_text()
    for old, new in {
        "<http_port>8123</http_port>": f"<http_port>{port}</http_port>",
        "<tcp_port>9000</tcp_port>": f"<tcp_port>{d.free_port()}</tcp_port>",
        "<interserver_http_port>9009</interserver_http_port>": (
            f"<interserver_http_port>{d.free_port()}</interserver_http_port>"
        ),
        "/var/lib/clickhouse/": f"{root}/data/",
        "/var/log/clickhouse-server/": f"{root}/log/",
        "<listen_host>::1</listen_host>": "",
    }.items():
        text = text.replace(old, new)
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.xml").write_text(text)
    shutil.copy(config.with_name("users.xml"), root / "users.xml")
    with _process(
        [binary, f"--config-file={root / 'config.xml'}"], root, f"http://127.0.0.1:{port}/ping"
    ) as _:
        yield f"http://127.0.0.1:{port}"


@contextmanager
def victoria_metrics(root: Path) -> Iterator[str]:
    binary = shutil.which("victoria-metrics")
    if binary is None:
        raise SystemExit("victoria-metrics is not installed (apt-get install victoria-metrics)")
    port = d.free_port()
    args = [binary, f"-httpListenAddr=127.0.0.1:{port}", f"-storageDataPath={root}", "-retentionPeriod=1d"]
    with _process(args, root, f"http://127.0.0.1:{port}/health"):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def _process(args: list[str], root: Path, ready_url: str) -> Iterator[subprocess.Popen[bytes]]:
    import httpx

    root.mkdir(parents=True, exist_ok=True)
    with (root / "stdout.log").open("wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=root)

        def ready() -> bool:
            try:
                return httpx.get(ready_url, timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        try:
            d.wait_until(ready, args[0], 60)
            yield process
        finally:
            process.terminate()
            process.wait(timeout=20)


@contextmanager
def otlp_receiver() -> Iterator[tuple[str, list[int]]]:
    """An OTLP/HTTP endpoint that counts the requests it takes (and drops their spans)."""
    counter = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            counter[0] += 1
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", d.free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", counter
    finally:
        server.shutdown()
        server.server_close()


# ---- measuring ---------------------------------------------------------------------------------------


def w1_per_step(cluster: d.Cluster, catalog_id: str, poll: float) -> list[float]:
    ok = lambda result: result == d.CHAIN_LENGTH  # noqa: E731
    return [
        d.checked(d.execute(cluster, catalog_id, d.TIMEOUTS["W1"], poll), ok, "W1").seconds
        * 1000
        / d.CHAIN_LENGTH
        for _ in range(d.W1_EXECUTIONS)
    ]


def w3_items(cluster: d.Cluster, catalog_id: str, poll: float, watch: bool) -> tuple[float, dict[str, float]]:
    """One W3 run: items/s, and (``watch``) the export's largest lag while it ran and its catch-up."""
    lags: list[tuple[int, float]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            sinks = cluster.http.get("/api/export/status").json()["sinks"]
            lags.append(
                (
                    max((s["lag_events"] for s in sinks), default=0),
                    max((s["lag_seconds"] for s in sinks), default=0.0),
                )
            )
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True) if watch else None
    before = _exported(cluster) if watch else 0
    started = time.perf_counter()
    if sampler:
        sampler.start()
    run = d.checked(
        d.execute(cluster, catalog_id, d.TIMEOUTS["W3"], poll), d.expected_loop(W3_ITEMS, True), "W3"
    )
    done.set()
    if sampler:
        sampler.join()
    export: dict[str, float] = {}
    if watch:
        d.wait_until(lambda: _lag(cluster) == 0, "the export to catch up", 300, 0.1)
        caught_up = time.perf_counter() - started
        export = {
            "max_lag_events": float(max((e for e, _ in lags), default=0)),
            "max_lag_seconds": max((s for _, s in lags), default=0.0),
            "catch_up_after_loop_s": caught_up - run.seconds,
            "events_per_s": (_exported(cluster) - before) / caught_up,
        }
    return W3_ITEMS / run.seconds, export


def _lag(cluster: d.Cluster) -> int:
    return max((s["lag_events"] for s in cluster.http.get("/api/export/status").json()["sinks"]), default=0)


def _exported(cluster: d.Cluster) -> int:
    sinks = cluster.http.get("/api/export/status").json()["sinks"]
    return min((s["exported"] for s in sinks), default=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    base = args.database_url or d.DEFAULT_DATABASE_URL
    texts = d.write_playbooks(256)
    logs = Path(tempfile.mkdtemp(prefix="noetl-bench-telemetry-"))
    samples: dict[str, dict[str, list[float]]] = {"off": {"W1": [], "W3": []}, "on": {"W1": [], "W3": []}}
    exports: list[dict[str, float]] = []
    with ExitStack() as stack:
        ch = stack.enter_context(clickhouse(logs / "clickhouse"))
        vm = stack.enter_context(victoria_metrics(logs / "vm"))
        otlp, requests = stack.enter_context(otlp_receiver())
        on_env = {
            "NOETL_EXPORT_CLICKHOUSE_URL": ch,
            "NOETL_EXPORT_INTERVAL": "0.5",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp,
            "NOETL_METRICS_PUSH_URL": f"{vm}/api/v1/import/prometheus",
            "NOETL_METRICS_PUSH_INTERVAL": "1",
        }
        clusters = {}
        for mode, env in (("off", {}), ("on", on_env)):
            url = stack.enter_context(d.scratch_database(base, f"noetl_tel_{mode}"))
            cluster = stack.enter_context(d.running_cluster(url, logs / mode, 64, extra_env=env))
            ids = {"W1": d.register(cluster, texts["d_w1"]), "W3": d.register(cluster, texts["d_w3"])}
            d.checked(d.execute(cluster, ids["W1"], 60, 0.01), lambda r: r == d.CHAIN_LENGTH, "warm-up")
            clusters[mode] = (cluster, ids)
        for run in range(args.runs):
            for mode in ("off", "on") if run % 2 == 0 else ("on", "off"):
                cluster, ids = clusters[mode]
                samples[mode]["W1"].extend(w1_per_step(cluster, ids["W1"], 0.01))
                items, export = w3_items(cluster, ids["W3"], 0.01, watch=mode == "on")
                samples[mode]["W3"].append(items)
                if export:
                    exports.append(export)
        spans_requests = requests[0]
    report = _report(samples, exports, spans_requests)
    print(json.dumps(report, indent=2) if args.json else _table(report))
    return 0 if report["passed"] else 1


def _report(
    samples: dict[str, dict[str, list[float]]], exports: list[dict[str, float]], otlp: int
) -> dict[str, Any]:
    w1_off, w1_on = (statistics.median(samples[m]["W1"]) for m in ("off", "on"))
    w3_off, w3_on = (statistics.median(samples[m]["W3"]) for m in ("off", "on"))
    overhead = {"W1": (w1_on - w1_off) / w1_off, "W3": (w3_off - w3_on) / w3_off}
    export = {k: statistics.median(e[k] for e in exports) for k in exports[0]} if exports else {}
    return {
        "W1_ms_per_step": {"off": w1_off, "on": w1_on, "overhead": overhead["W1"]},
        "W3_items_per_s": {"off": w3_off, "on": w3_on, "overhead": overhead["W3"]},
        "export_under_W3": export,
        "otlp_requests": otlp,
        "target_overhead": TARGET_OVERHEAD,
        "passed": all(v < TARGET_OVERHEAD for v in overhead.values()),
        "samples": samples,
    }


def _table(report: dict[str, Any]) -> str:
    lines = ["telemetry off vs on (ClickHouse export + OTLP traces + metrics push), medians:"]
    for key, unit in (("W1_ms_per_step", "ms/step"), ("W3_items_per_s", "items/s")):
        row = report[key]
        verdict = "PASS" if row["overhead"] < TARGET_OVERHEAD else "MISS"
        lines.append(
            f"  {key.split('_')[0]:<4} off {row['off']:10.2f}  on {row['on']:10.2f} {unit:<8} "
            f"overhead {row['overhead'] * 100:+6.1f} %  (target < 5 %) {verdict}"
        )
    export = report["export_under_W3"]
    if export:
        lines.append(
            f"  export under W3: {export['events_per_s']:,.0f} events/s; largest lag "
            f"{export['max_lag_events']:,.0f} events / {export['max_lag_seconds']:.1f} s; caught up "
            f"{export['catch_up_after_loop_s']:.2f} s after the loop ended"
        )
    lines.append(f"  OTLP requests received: {report['otlp_requests']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
