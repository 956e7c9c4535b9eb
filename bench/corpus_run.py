"""Run upstream's fixture playbooks (a copy of the public ``noetl/e2e`` repository) and judge each run.

Usage::

    python bench/corpus_run.py E2E_DIR [--only SUBSTRING]... [--json] [--timeout S] [--database-url URL]

``E2E_DIR`` holds a copy of ``noetl/e2e`` (checked out OUTSIDE this repository; none of its files
belong here). Every playbook under ``fixtures/`` (166 at upstream's commit 1e41859) is
classified: runnable on one machine, or not (and why: a cloud service, a public API, a tool kind
this build does not run). Each runnable one is run as a user would run it, with
``noetl run --json``, changing only hosts, URLs and credentials:

* every postgres credential name the fixtures use points at a fresh database on the local server
  (``--database-url``, default ``postgresql://postgres@127.0.0.1:5432/postgres``; the database is
  created for the run and dropped afterwards);
* upstream's mock API (``fixtures/servers/paginated_api.py``) is started from the copy on a free
  loopback port and given to the fixtures as their ``api_url`` workload key;
* ``--catalog`` is the fixture tree, so sub-playbooks are found by their ``metadata.path``;
* each run's working directory is the copy's root (the fixtures' ``script:`` paths are relative
  to it), which is also the file root ``noetl run`` uses by default.

The outcome is compared with what the fixture's own comments, README or assertions say (the
``EXPECT`` table below cites the source for each value checked). Prints one line per playbook and
the counts; exits 1 when a runnable fixture does not behave as documented.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

Outcome = dict[str, Any]
Check = Callable[[Outcome], str | None]

_PLAYBOOK_KIND = re.compile(r"^kind:\s*['\"]?playbook['\"]?\s*$", re.I | re.M)

#: Credential names the fixtures give postgres tasks (directly or through workload keys).
PG_CREDENTIALS = (
    "pg_k8s",
    "pg_local",
    "pg_auth",
    "pg_tutorial",
    "test_postgres",
    "noetl",
    "noetl_connection",
    "postgres_local",
    "pg_noetl_k8s",
    "pg_trade",
)


@dataclasses.dataclass(frozen=True)
class Expect:
    """What one run of a fixture must produce, and where the fixture says so."""

    status: str = "COMPLETED"
    checks: tuple[Check, ...] = ()
    workload: tuple[tuple[str, Any], ...] = ()
    source: str = "runs to completion (no documented values)"
    label: str = ""
    phase: int = 1
    """Runs of phase 0 (fixtures that create what others read) finish before the others start."""
    own_database: bool = False
    """A fresh database of its own (for a fixture inserting the same fixed keys as another one)."""
    timeout: float | None = None
    """Seconds for this run when longer than ``--timeout`` (load fixtures)."""


# ---------------------------------------------------------------- checks on an outcome


def _get(value: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError(path)
    return value


def equals(path: str, expected: Any) -> Check:
    """The outcome's value at ``path`` (dotted, from the outcome's top) equals ``expected``."""

    def check(outcome: Outcome) -> str | None:
        try:
            got = _get(outcome, path)
        except KeyError:
            return f"{path} is missing"
        return None if got == expected else f"{path} is {_short(got)}, documented {_short(expected)}"

    return check


def length(path: str, expected: int) -> Check:
    """The list (or string) at ``path`` has ``expected`` elements."""

    def check(outcome: Outcome) -> str | None:
        try:
            got = _get(outcome, path)
        except KeyError:
            return f"{path} is missing"
        if not isinstance(got, (list, str, dict)):
            return f"{path} is {_short(got)}, not a list"
        return None if len(got) == expected else f"len({path}) is {len(got)}, documented {expected}"

    return check


def ran(*steps: str) -> Check:
    """Each of ``steps`` is in ``executed_steps``."""

    def check(outcome: Outcome) -> str | None:
        missing = [s for s in steps if s not in outcome.get("executed_steps", [])]
        return f"steps not run: {', '.join(missing)}" if missing else None

    return check


def not_ran(*steps: str) -> Check:
    """None of ``steps`` ran."""

    def check(outcome: Outcome) -> str | None:
        extra = [s for s in steps if s in outcome.get("executed_steps", [])]
        return f"steps that should not run: {', '.join(extra)}" if extra else None

    return check


def step_field(step: str, field: str, expected: Any) -> Check:
    """``step_results.<step>.<field>`` equals ``expected`` (a fixture's own verdict or count)."""
    return equals(f"step_results.{step}.{field}", expected)


def error_mentions(text: str) -> Check:
    """The execution's error message mentions ``text`` (case-insensitive)."""

    def check(outcome: Outcome) -> str | None:
        message = json.dumps(outcome.get("error") or {}).lower()
        if text.lower() in message:
            return None
        return f"error does not mention {text!r}: {_short(outcome.get('error'))}"

    return check


def _short(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------- the corpus table

#: Playbooks that cannot run on one machine, by path prefix, with the reason.
NOT_RUNNABLE: dict[str, str] = {
    "api_integration/amadeus_ai": "needs api.openai.com and the Amadeus API",
    "api_integration/auth0/auth0_": "needs Auth0, NATS and the gateway service",
    "api_integration/auth0/get_auth0_token": "needs Auth0",
    "api_integration/auth0/user_management": "needs the upstream gateway service",
    "api_integration/github_metrics": "needs api.github.com",
    "api_integration/quantum_networking": "needs the IBM Quantum API",
    "batch_execution/heavy_payload_pipeline": "needs httpbin.org",
    "batch_execution/multi_playbook_batch": "needs api.open-meteo.com and httpbin.org",
    "batch_execution/traveler_batch_enrichment": "needs httpbin.org",
    "cache_test/": "needs api.openai.com",
    "container_": "needs a container runtime (tool kind container)",
    "control_flow/weather_control_flow": "needs api.open-meteo.com",
    "data_processing/": "needs en.wikipedia.org",
    "data_transfer/http_": "needs jsonplaceholder.typicode.com",
    "data_transfer/snowflake_postgres": "needs Snowflake",
    "deployment/": "deploys with kind/docker",
    "duckdb_gcs_workload_identity/": "needs Google Cloud Storage",
    "ducklake_test/": "needs a DuckLake catalog service",
    "examples/": "needs public APIs (api.example.com, httpbin.org, open-meteo)",
    "http_test.yaml": "needs the upstream Rust server in Kubernetes",
    "interactive_brokers/": "needs an Interactive Brokers gateway",
    "keychain/": "needs Google identity tokens and a Cloud Run service",
    "load_test/tooling_non_blocking": "needs NATS, Snowflake and the upstream server",
    "oauth/": "needs Google OAuth",
    "ops/": "needs api.openai.com",
    "postgres_excel_gcs_test/": "needs Google Cloud Storage",
    "python_psycopg/": "needs jsonplaceholder.typicode.com",
    "quantum_cudaq/": "needs a quantum service mesh",
    "retry_test/http_retry_": "needs httpbin.org",
    "root_scripts/test_keychain": "needs the Amadeus OAuth API",
    "save_storage_test/save_delegation_test": "needs httpbin.org",
    "script_execution/k8s_job": "needs Kubernetes and GCS",
    "script_execution/postgres_s3": "needs S3",
    "script_execution/python_gcs": "needs GCS",
    "script_execution/python_http": "needs raw.githubusercontent.com",
    "spike/spike_e2e_test": "needs the upstream server's agent/MCP endpoints",
    "subscription/": "needs Kafka / Pub/Sub",
    "test_gcs_storage": "needs GCS",
    "test_gke_lifecycle/": "needs Google Kubernetes Engine",
    "test_nats_kv": "needs NATS (credentials of upstream's cluster)",
    "test_output_select": "needs upstream's artifact store (GCS)",
    "test_storage_tiers": "needs upstream's artifact store (GCS)",
    "tutorials/": "needs api.github.com and GCS",
    "v10_canonical_example": "needs api.example.com",
    "load_test/state_report_synthetic_load/state_report_synthetic_load.yaml": "needs test.example.com",
    "batch_execution/server_oom_stress_test/": "posts to test.example.com",
    "batch_execution/server_oom_stress_test_v2/": "posts to test.example.com",
}

_OK = "runs to completion (no documented values)"
EXPECT: dict[str, tuple[Expect, ...]] = {
    "actions_test.yaml": (Expect(),),
    "api_integration/auth0/check_playbook_access.yaml": (Expect(),),
    "api_integration/auth0/provision_auth_schema.yaml": (Expect(phase=0, source="creates the auth schema"),),
    "api_integration/auth0/setup_admin_permissions.yaml": (Expect(),),
    "api_integration/auth0/test_auth0_full_flow.yaml": (Expect(),),
    "atomic_item_context.yaml": (Expect(),),
    "batch_execution/frame_heartbeat_regression/frame_heartbeat_regression.yaml": (Expect(),),
    "batch_execution/kind_playbook_lease_expiry/kind_playbook_lease_expiry.yaml": (Expect(),),
    "batch_execution/kind_playbook_lease_expiry_worker/kind_playbook_lease_expiry_worker.yaml": (Expect(),),
    "batch_execution/parallel_distributed_claim_regression/parallel_distributed_claim_regression.yaml": (
        Expect(),
    ),
    "batch_execution/parallel_distributed_claim_regression_worker/"
    "parallel_distributed_claim_regression_worker.yaml": (Expect(),),
    "batch_execution/server_oom_stress_chunk_worker/server_oom_stress_chunk_worker.yaml": (Expect(),),
    "batch_execution/server_oom_stress_chunk_worker_v2/server_oom_stress_chunk_worker_v2.yaml": (Expect(),),
    "broken_playbooks/should_error_tool_is_required.yaml": (
        Expect(status="INVALID", source="named 'should error': a postgres task without its command"),
    ),
    "broken_sql.yaml": (Expect(status="FAILED", source="named broken_sql: its SQL does not parse"),),
    "comprehensive_test.yaml": (Expect(),),
    "control_flow_workbook/control_flow_workbook.yaml": (Expect(),),
    "data_transfer/postgres_jsonb_test/postgres_jsonb_test.yaml": (Expect(),),
    "duckdb_test.yaml": (Expect(),),
    "fanout_reduce/fanout_reduce_phase6.yaml": (Expect(),),
    "gui/widget_all_types/widget_all_types.yaml": (Expect(),),
    "hello_world/hello_world.yaml": (
        Expect(
            checks=(ran("start", "test_step", "end"), step_field("test_step", "data.message", "Hello World")),
            source="playbook_test_config.yaml: steps start, test_step, end; data.message 'Hello World'",
        ),
    ),
    "iterator_save_test.yaml": (Expect(),),
    "iterator_save_test/iterator_save_test.yaml": (Expect(),),
    "json_serialization_save.yaml": (Expect(),),
    "json_serialization_save/json_serialization_save.yaml": (
        Expect(own_database=True, source="inserts the same fixed keys as json_serialization_save.yaml"),
    ),
    "load_test/heavy_loop_aggregation/heavy_loop_aggregation.yaml": (
        Expect(
            checks=(step_field("validate_results", "status", "validated"),),
            source="validate_results: status 'validated' when every check passes",
        ),
    ),
    "load_test/reference_chain_loop_stress/reference_chain_loop_stress.yaml": (Expect(),),
    "load_test/state_report_synthetic_load/state_report_synthetic_load_worker.yaml": (Expect(),),
    "loop_test.yaml": (Expect(),),
    "pagination/basic/test_pagination_basic.yaml": (Expect(),),
    "pagination/cursor/test_pagination_cursor.yaml": (
        Expect(
            checks=(
                step_field("validate_results", "status", "success"),
                step_field("validate_results", "total_events", 35),
            ),
            source="validate_results: expected_count = 35; README: 35 events across 4 cursor hops",
        ),
    ),
    "pagination/fetch_load_test/test_fetch_load.yaml": (Expect(),),
    "pagination/loop_with_pagination/test_loop_with_pagination.yaml": (Expect(),),
    "pagination/max_iterations/test_pagination_max_iterations.yaml": (Expect(),),
    "pagination/offset/test_pagination_offset.yaml": (
        Expect(
            checks=(
                step_field("validate_results", "status", "success"),
                step_field("validate_results", "total_users", 35),
            ),
            source="validate_results: expected_count = 35; README: 35 users across 4 pages",
        ),
    ),
    "pagination/pipeline/test_pagination_pipeline.yaml": (
        Expect(
            workload=(
                ("db_host", "$DB_HOST"),
                ("db_port", "$DB_PORT"),
                ("db_user", "$DB_USER"),
                ("db_password", "$DB_PASSWORD"),
                ("db_name", "$DB_NAME"),
            )
        ),
    ),
    "pagination/pipeline/test_pipeline_error_handling.yaml": (Expect(),),
    "pagination/pipeline/test_pipeline_heavy_payload.yaml": (Expect(),),
    "pagination/pipeline/test_pipeline_simple.yaml": (Expect(),),
    "pagination/pipeline_v2/test_pagination_pipeline_v2.yaml": (
        Expect(
            workload=(
                ("db_host", "$DB_HOST"),
                ("db_port", "$DB_PORT"),
                ("db_user", "$DB_USER"),
                ("db_password", "$DB_PASSWORD"),
                ("db_name", "$DB_NAME"),
            )
        ),
    ),
    "pagination/retry/test_pagination_retry.yaml": (Expect(),),
    "patient_batch_parallel_queue/patient_batch_parallel_queue.yaml": (Expect(timeout=600),),
    "pft_flow_test/pft_queue_db_maintenance.yaml": (
        Expect(
            workload=(
                ("pg_host", "$DB_HOST"),
                ("pg_port", "$DB_PORT"),
                ("pg_user", "$DB_USER"),
                ("pg_password", "$DB_PASSWORD"),
                ("pg_database", "$DB_NAME"),
            ),
        ),
    ),
    "pft_flow_test/test_mds_batch_worker.yaml": (Expect(),),
    "pft_flow_test/test_pft_flow.yaml": (Expect(),),
    "pft_flow_test/test_pft_flow_v2.yaml": (Expect(),),
    "pft_flow_test/test_pft_page_continuation.yaml": (Expect(),),
    "playbook_composition/playbook_composition.yaml": (Expect(),),
    "playbook_composition/user_profile_scorer.yaml": (Expect(),),
    "postgres_test.yaml": (Expect(),),
    "regression_test/create_test_schema.yaml": (Expect(phase=0, source="creates the regression schema"),),
    "regression_test/master_regression_test.yaml": (Expect(),),
    "regression_test/master_regression_test_parallel.yaml": (Expect(),),
    "retry_test/duckdb_retry_query.yaml": (Expect(),),
    "retry_test/postgres_retry_connection.yaml": (Expect(),),
    "retry_test/python_retry_exception.yaml": (Expect(),),
    "retry_test/retry_simple_config.yaml": (Expect(),),
    "root_scripts/test_implicit_end_routing.yaml": (Expect(),),
    "root_scripts/test_script_loading.yaml": (Expect(),),
    "root_scripts/test_simple_loop.yaml": (Expect(),),
    "save_storage_test/create_tables.yaml": (Expect(phase=0, source="creates the save tests' tables"),),
    "save_storage_test/save_all_storage_types.yaml": (Expect(),),
    "save_storage_test/save_edge_cases.yaml": (Expect(),),
    "save_storage_test/save_simple_test.yaml": (Expect(),),
    "script_execution/postgres_file_example.yaml": (Expect(),),
    "script_execution/python_file_example.yaml": (Expect(),),
    "simple_python.yaml": (Expect(),),
    "spike/spike_failing_subflow.yaml": (
        Expect(status="FAILED", source="description: deliberately-failing, non-routable URL"),
    ),
    "test_args_passing.yaml": (Expect(),),
    "test_end_with_action.yaml": (Expect(),),
    "test_large_result_extraction.yaml": (Expect(),),
    "test_large_tabular_result.yaml": (Expect(),),
    "test_loop_instance_isolation/playbook.yaml": (Expect(),),
    "test_oversize_command_context.yaml": (Expect(),),
    "test_resolve_by_urn.yaml": (Expect(),),
    "test_side_effect_barrier.yaml": (Expect(),),
    "test_start_with_action.yaml": (Expect(),),
    "tradedb/tradedb_bootstrap.yaml": (Expect(),),
    "tradedb/tradedb_create_db.yaml": (Expect(),),
    "vars_test/test_transient.yaml": (Expect(),),
    "vars_test/test_vars_api.yaml": (Expect(),),
    "vars_test/test_vars_block.yaml": (
        Expect(
            checks=(step_field("verify_vars", "status", "success"),),
            source="verify_vars: status 'success' when the extracted values are 123, alice@..., 2, test_db",
        ),
    ),
    "vars_test/test_vars_simple.yaml": (Expect(),),
    "vars_test/test_vars_template_access.yaml": (Expect(),),
    # fixtures/subscription: per-delivery targets, run with a message and without one
    "subscription/handle_webhook.yaml": (
        Expect(
            workload=(("order_id", "o-1"), ("amount", 12), ("message", {"id": "m-1"})),
            checks=(
                equals("step_results.start.order_id", "o-1"),
                equals("step_results.start.message_id", "m-1"),
            ),
            source="header: the message envelope arrives as the workload",
            label="with a message",
        ),
        Expect(
            checks=(
                equals("step_results.start.order_id", "unknown"),
                equals("step_results.start.message_id", ""),
            ),
            source="input defaults: order_id 'unknown', message_id ''",
            label="without a message",
        ),
    ),
    "subscription/handle_webhook_priority.yaml": (
        Expect(
            workload=(("order_id", "o-2"), ("message", {"id": "m-2"})),
            checks=(
                equals("step_results.start.via", "priority"),
                equals("step_results.start.message_id", "m-2"),
            ),
            source="header: the message envelope arrives as the workload",
            label="with a message",
        ),
        Expect(
            checks=(equals("step_results.start.message_id", ""),),
            source="input defaults: message_id ''",
            label="without a message",
        ),
    ),
    "subscription/sub_ingest_default.yaml": (Expect(),),
    "subscription/sub_ingest_priority.yaml": (Expect(),),
}


# ---------------------------------------------------------------- services


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def mock_api(servers: Path) -> Iterator[str]:
    """Upstream's mock paginated API from the copy, on a free loopback port; yields its base URL."""
    port = _free_port()
    code = (
        "import sys, uvicorn; sys.path.insert(0, sys.argv[1]); import paginated_api as m; "
        "uvicorn.run(m.app, host='127.0.0.1', port=int(sys.argv[2]), log_level='warning')"
    )
    env = {**os.environ, "PATIENT_RECORDS_MIN_DELAY": "0.05", "PATIENT_RECORDS_MAX_DELAY": "0.1"}
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(servers), str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the mock API in {servers} did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)


@contextlib.contextmanager
def fresh_database(admin_url: str) -> Iterator[dict[str, Any]]:
    """A new database on the server of ``admin_url``; yields postgres credential data for it."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    name = "noetl_e2e_" + secrets.token_hex(4)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    info = conninfo_to_dict(admin_url)
    try:
        yield {
            "db_host": info.get("host", "127.0.0.1"),
            "db_port": int(info.get("port", 5432)),
            "db_user": info.get("user", "postgres"),
            "db_password": info.get("password", ""),
            "db_name": name,
        }
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ---------------------------------------------------------------- running


@dataclasses.dataclass
class Result:
    """One run of one fixture: what happened and whether it is what the fixture documents."""

    path: str
    label: str
    expected: str
    got: str
    ok: bool
    why: str
    seconds: float


def playbooks(root: Path) -> list[str]:
    """Relative paths of every ``kind: Playbook`` YAML under ``root``, sorted."""
    found = []
    for path in sorted(root.rglob("*.y*ml")):
        if path.suffix in (".yaml", ".yml") and _PLAYBOOK_KIND.search(path.read_text(errors="replace")):
            found.append(path.relative_to(root).as_posix())
    return found


def classify(path: str) -> str | None:
    """Why ``path`` cannot run on one machine, or None when it can."""
    if path in EXPECT:
        return None
    path = path.removeprefix("playbooks/")
    if path in EXPECT:
        return None
    for prefix, reason in NOT_RUNNABLE.items():
        if path.startswith(prefix):
            return reason
    return "not classified by this runner"


def _key(path: str) -> str:
    return path if path in EXPECT else path.removeprefix("playbooks/")


def run_one(path: str, expect: Expect, ctx: dict[str, Any]) -> Result:
    """Run one fixture once with ``noetl run --json`` and judge the outcome."""
    if not expect.own_database:
        return _run_one(path, expect, ctx)
    with tempfile.TemporaryDirectory() as tmp, fresh_database(ctx["database_url"]) as pg:
        credentials = Path(tmp, "credentials.json")
        credentials.write_text(json.dumps({n: {"type": "postgres", "data": pg} for n in PG_CREDENTIALS}))
        return _run_one(path, expect, {**ctx, "credentials": str(credentials), "pg": _placeholders(pg)})


def _run_one(path: str, expect: Expect, ctx: dict[str, Any]) -> Result:
    root: Path = ctx["root"]
    command = [
        sys.executable,
        "-m",
        "noetl",
        "run",
        str(root / path),
        "--json",
        "--credentials",
        ctx["credentials"],
        "--catalog",
        str(root),
        "--set",
        f"api_url={ctx['api_url']}",
    ]
    for key, value in expect.workload:
        if isinstance(value, str) and value.startswith("$DB_"):
            value = ctx["pg"][value.removeprefix("$DB_").lower().replace("host", "db_host")]
        command += ["--set", f"{key}={json.dumps(value)}"]
    if ctx.get("undefined"):
        command += ["--undefined", ctx["undefined"]]
    started = time.monotonic()
    timeout = max(ctx["timeout"], expect.timeout or 0)
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False, cwd=root.parent
        )
    except subprocess.TimeoutExpired:
        return Result(
            path, expect.label, expect.status, "TIMEOUT", False, f"no outcome in {timeout} s", timeout
        )
    seconds = time.monotonic() - started
    outcome: Outcome = {}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                outcome = json.loads(line)
    if done.returncode == 2 or not outcome:
        got, why = "INVALID", (done.stderr.strip().splitlines() or ["no output"])[-1]
    else:
        got = str(outcome.get("status"))
        error = outcome.get("error") or {}
        why = f"{error.get('step')}: {error.get('message')}" if error else ""
    if got != expect.status:
        return Result(path, expect.label, expect.status, got, False, why[:300], seconds)
    problems = [p for p in (check(outcome) for check in expect.checks) if p]
    return Result(path, expect.label, expect.status, got, not problems, "; ".join(problems)[:300], seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("e2e", type=Path, help="a copy of noetl/e2e (or its fixtures directory)")
    parser.add_argument("--only", action="append", default=[], help="run paths containing this (repeatable)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per run")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per run (default 240)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (default 2)")
    parser.add_argument(
        "--undefined",
        choices=("strict", "lenient"),
        default=None,
        help="pass --undefined to every run (lenient: upstream's rendering of undefined values)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("NOETL_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL server for the fixtures' fresh database [env NOETL_TEST_DATABASE_URL]",
    )
    args = parser.parse_args()
    root = args.e2e / "fixtures" if (args.e2e / "fixtures").is_dir() else args.e2e
    servers = root / "servers"
    results, skipped = run_corpus(root, servers, args)
    report(results, skipped, args.json)
    sys.exit(0 if all(r.ok for r in results) else 1)


def run_corpus(root: Path, servers: Path, args: argparse.Namespace) -> tuple[list[Result], dict[str, str]]:
    """Classify every playbook under ``root`` and run the runnable ones (filtered by ``--only``)."""
    every = playbooks(root)
    skipped = {p: why for p in every if (why := classify(p))}
    jobs = [
        (p, e)
        for p in every
        if p not in skipped and (not args.only or any(s in p for s in args.only))
        for e in EXPECT[_key(p)]
    ]
    with (
        tempfile.TemporaryDirectory() as tmp,
        fresh_database(args.database_url) as pg,
        mock_api(servers) as url,
    ):
        credentials = Path(tmp, "credentials.json")
        credentials.write_text(json.dumps({n: {"type": "postgres", "data": pg} for n in PG_CREDENTIALS}))
        ctx = {
            "root": root,
            "credentials": str(credentials),
            "api_url": url,
            "timeout": args.timeout,
            "pg": _placeholders(pg),
            "undefined": args.undefined,
            "database_url": args.database_url,
        }
        results: list[Result] = []
        for phase in sorted({e.phase for _, e in jobs}):
            batch = [job for job in jobs if job[1].phase == phase]
            with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
                results += pool.map(lambda job: run_one(job[0], job[1], ctx), batch)
    return results, skipped


def _placeholders(pg: dict[str, Any]) -> dict[str, Any]:
    """Values for ``$DB_HOST``, ``$DB_PORT``... in :attr:`Expect.workload`: the fresh database's."""
    return {
        "db_host": pg["db_host"],
        "port": pg["db_port"],
        "user": pg["db_user"],
        "password": pg["db_password"],
        "name": pg["db_name"],
    }


def report(results: list[Result], skipped: dict[str, str], as_json: bool) -> None:
    """Print the per-run table (or JSON lines), the not-runnable list and the counts."""
    if as_json:
        for result in results:
            print(json.dumps(dataclasses.asdict(result)))
        return
    for r in results:
        name = r.path + (f" [{r.label}]" if r.label else "")
        mark = "ok  " if r.ok else "MISS"
        detail = "" if r.ok else f"  expected {r.expected}, got {r.got}: {r.why}"
        print(f"{mark} {name} ({r.seconds:.1f} s){detail}")
    print("not runnable here:")
    for path, why in skipped.items():
        print(f"  {path}: {why}")
    passed = sum(r.ok for r in results)
    fixtures = len({r.path for r in results})
    print(
        f"playbooks: {len(results) and fixtures + len(skipped)}  runnable: {fixtures}  runs: {len(results)}"
        f"  as documented: {passed} / {len(results)}  not runnable: {len(skipped)}"
    )


if __name__ == "__main__":
    main()
