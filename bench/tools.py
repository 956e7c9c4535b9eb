"""Measure the integration tools on large data: rows/s, bytes/s and the peak RSS of ``noetl run``.

Usage::

    python bench/tools.py [--mb 1024] [--rows 1000000] [--runs 3] [--only s3|clickhouse]

* **s3** (moto server in this process stands in for S3): ``noetl run`` of a playbook that puts a
  local file of ``--mb`` MiB (multipart, 8 MiB parts) and gets it back to another file. Reports
  MiB/s per direction and the peak RSS of the ``noetl`` process, which must stay far below the
  object's size (the tool streams); next to it, the same upload and download done by boto3's
  transfer manager directly in a subprocess (the floor the tool can reach).
* **clickhouse** (Debian's clickhouse-server on free ports): ``noetl run`` of a playbook that
  inserts ``--rows`` rows from a JSON-lines file (batches of 100,000) and counts them. Reports
  rows/s and peak RSS; next to it, DuckDB's own ``COPY`` of the same file to Parquet in the same
  run, as a reference for how fast the bytes can be read and written on this machine.

Medians of ``--runs`` runs. Run by hand, never from the test suite; the machine is shared, so the
figures are indicative. This is not the ``transfer`` benchmark of issue 11 (the ``transfer`` tool does
not exist yet); it measures what the s3 and clickhouse tools do with the same amounts of data.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def noetl_run(playbook: str, workdir: Path, env: dict[str, str]) -> tuple[dict[str, Any], float, float]:
    """(outcome, seconds, peak RSS in MiB) of ``noetl run PLAYBOOK --json`` in a subprocess."""
    path = workdir / "bench.yaml"
    path.write_text(textwrap.dedent(playbook))
    full = {k: v for k, v in os.environ.items() if not k.startswith("NOETL_")} | env
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "noetl", "run", str(path), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=full,
        cwd=workdir,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    out = proc.stdout.read().decode() if proc.stdout else ""
    err = proc.stderr.read().decode() if proc.stderr else ""
    if not out.strip():
        raise SystemExit(f"noetl run gave no outcome (status {status}): {err[-2000:]}")
    outcome = json.loads(out)
    if outcome["status"] != "COMPLETED":
        raise SystemExit(f"noetl run failed: {outcome['error']}")
    return outcome, seconds, usage.ru_maxrss / 1024


def bench_s3(mb: int, runs: int) -> dict[str, Any]:
    import boto3

    from support.services import moto_server

    with moto_server() as endpoint, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        keys = {"access_key_id": "bench", "secret_access_key": "bench-secret", "region": "us-east-1"}
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="bench",
            aws_secret_access_key="bench-secret",
            region_name="us-east-1",
        ).create_bucket(Bucket="bench")
        (work / "creds.json").write_text(
            json.dumps({"bench_s3": {"type": "s3", "data": {**keys, "endpoint_url": endpoint}}})
        )
        block = os.urandom(1024 * 1024)
        with (work / "big.bin").open("wb") as out:
            for _ in range(mb):
                out.write(block)
        playbook = """
        apiVersion: noetl.io/v2
        kind: Playbook
        metadata: {name: bench_s3}
        workflow:
          - step: start
            tool: {kind: s3, auth: bench_s3, operation: put, bucket: bench, key: big.bin, file: big.bin}
            next: {arcs: [{step: back}]}
          - step: back
            tool: {kind: s3, auth: bench_s3, operation: get, bucket: bench, key: big.bin, file: back.bin}
        """
        env = {"NOETL_FILE_ROOTS": str(work), "NOETL_CREDENTIALS_FILE": str(work / "creds.json")}
        seconds, rss = [], []
        for _ in range(runs):
            _, took, peak = noetl_run(playbook, work, env)
            assert (work / "back.bin").stat().st_size == mb * 1024 * 1024
            seconds.append(took)
            rss.append(peak)
        floor = _boto_floor(endpoint, work, runs)
    median = statistics.median(seconds)
    return {
        "object_mib": mb,
        "noetl_seconds_put_and_get": round(median, 2),
        "noetl_mib_per_s": round(2 * mb / median, 1),
        "noetl_peak_rss_mib": round(max(rss), 1),
        "boto3_direct_seconds": round(floor["seconds"], 2),
        "boto3_direct_peak_rss_mib": round(floor["rss"], 1),
    }


def _boto_floor(endpoint: str, work: Path, runs: int) -> dict[str, float]:
    code = textwrap.dedent(
        f"""
        import boto3
        from boto3.s3.transfer import TransferConfig
        c = boto3.client("s3", endpoint_url={endpoint!r}, aws_access_key_id="bench",
                         aws_secret_access_key="bench-secret", region_name="us-east-1")
        t = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20, max_concurrency=2)
        c.upload_file({str(work / "big.bin")!r}, "bench", "floor.bin", Config=t)
        c.download_file("bench", "floor.bin", {str(work / "floor.bin")!r}, Config=t)
        """
    )
    seconds, rss = [], []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", code])
        _, status, usage = os.wait4(proc.pid, 0)
        assert status == 0
        seconds.append(time.perf_counter() - start)
        rss.append(usage.ru_maxrss / 1024)
    return {"seconds": statistics.median(seconds), "rss": max(rss)}


def bench_clickhouse(rows: int, runs: int) -> dict[str, Any]:
    import duckdb

    from support.clickhouse import clickhouse

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "rows.jsonl"
        con = duckdb.connect()
        con.execute(
            f"COPY (SELECT i AS id, CASE WHEN i % 3 = 0 THEN 'eu' ELSE 'us' END AS region, "
            f"(i % 1000) / 10.0 AS total FROM range({rows}) t(i)) TO '{data}' (FORMAT json)"
        )
        with clickhouse(work / "ch") as server:
            server.query(
                "CREATE TABLE bench (id UInt64, region String, total Float64) ENGINE = MergeTree ORDER BY id"
            )
            (work / "creds.json").write_text(
                json.dumps(
                    {"bench_ch": {"type": "clickhouse", "data": {"url": server.url, "user": "default"}}}
                )
            )
            playbook = """
            apiVersion: noetl.io/v2
            kind: Playbook
            metadata: {name: bench_ch}
            workflow:
              - step: start
                tool: {kind: clickhouse, auth: bench_ch, operation: command, query: TRUNCATE TABLE bench}
                next: {arcs: [{step: load}]}
              - step: load
                tool:
                  kind: clickhouse
                  auth: bench_ch
                  operation: insert
                  table: bench
                  file: rows.jsonl
                  batch: 100000
                next: {arcs: [{step: count}]}
              - step: count
                tool: {kind: clickhouse, auth: bench_ch, query: SELECT count() AS n FROM bench}
            """
            env = {"NOETL_FILE_ROOTS": str(work), "NOETL_CREDENTIALS_FILE": str(work / "creds.json")}
            seconds, rss = [], []
            for _ in range(runs):
                outcome, took, peak = noetl_run(playbook, work, env)
                assert int(outcome["step_results"]["count"]["rows"][0]["n"]) == rows
                seconds.append(took)
                rss.append(peak)
        copies = []
        for _ in range(runs):
            start = time.perf_counter()
            con.execute(
                f"COPY (SELECT * FROM read_json_auto('{data}')) TO '{work / 'copy.parquet'}' (FORMAT parquet)"
            )
            copies.append(time.perf_counter() - start)
        con.close()
    median, copy = statistics.median(seconds), statistics.median(copies)
    return {
        "rows": rows,
        "noetl_seconds": round(median, 2),
        "noetl_rows_per_s": round(rows / median),
        "noetl_peak_rss_mib": round(max(rss), 1),
        "duckdb_copy_jsonl_to_parquet_seconds": round(copy, 2),
        "duckdb_copy_rows_per_s": round(rows / copy),
        "bench_process_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=1024, help="size of the S3 object in MiB")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows inserted into ClickHouse")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=("s3", "clickhouse"))
    args = parser.parse_args()
    results: dict[str, Any] = {}
    if args.only in (None, "s3"):
        results["s3"] = bench_s3(args.mb, args.runs)
    if args.only in (None, "clickhouse"):
        results["clickhouse"] = bench_clickhouse(args.rows, args.runs)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
