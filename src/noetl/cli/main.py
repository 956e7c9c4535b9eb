"""The ``noetl`` command line.

Every command keeps its imports inside its function, so ``noetl run`` pays only for what it uses.
Errors from NoETL print as ``error: <where>: <what>`` on stderr, never as a traceback; exit code 2
means the playbook or the command line is invalid, 1 that an execution failed or was cancelled.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from noetl import __version__
from noetl.cli.options import log_format_option
from noetl.errors import NoetlError

if TYPE_CHECKING:
    from noetl.cli.client import Client


DEFAULT_SERVER_URL = "http://127.0.0.1:8082"

F = TypeVar("F", bound=Callable[..., Any])


def server_url_option(command: F) -> F:
    """``--server-url`` (``NOETL_SERVER_URL``) for every command that talks to the server."""
    return click.option(
        "--server-url",
        envvar="NOETL_SERVER_URL",
        show_envvar=True,
        default=DEFAULT_SERVER_URL,
        metavar="URL",
        help="The NoETL server's base URL.",
    )(command)


def json_option(command: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(command)


def client(url: str) -> Client:
    from noetl.cli.client import Client

    return Client(url)


class _Group(click.Group):
    """Turns NoetlError into a one-line message and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NoetlError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="noetl")
@click.option(
    "--gateway",
    envvar="NOETL_GATEWAY_URL",
    show_envvar=True,
    metavar="URL",
    help="Talk to the server through this gateway (with --api-key) instead of --server-url.",
)
@click.option("--api-key", envvar="NOETL_API_KEY", show_envvar=True, help="API key (or JWT) for the gateway.")
def cli(gateway: str | None, api_key: str | None) -> None:
    """NoETL: run declarative YAML playbooks locally or on a server."""
    from noetl.dsl import yamlload

    yamlload.configure(yamlload.Limits.from_env(os.environ))


@cli.command()
@click.argument("playbook", type=click.Path())
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a workload key (YAML scalar or JSON); a.b=1 sets b inside a. A key the workload does "
    "not declare is a warning (an error with --strict).",
)
@click.option("--payload", "--workload", "payload", metavar="JSON", help="Workload keys as a JSON object.")
@click.option(
    "--credentials",
    type=click.Path(dir_okay=False),
    envvar="NOETL_CREDENTIALS_FILE",
    show_envvar=True,
    help="YAML or JSON file: name -> {type, data} (distributed: stored on the server first).",
)
@click.option(
    "--catalog",
    "catalogs",
    multiple=True,
    type=click.Path(file_okay=False),
    envvar="NOETL_CATALOG",
    show_envvar=True,
    help=(
        "Directory searched, with its subdirectories, for sub-playbooks (repeatable; distributed: "
        "the ones called are registered)."
    ),
)
@click.option(
    "--events", "events_file", type=click.Path(dir_okay=False), help="Write the event log as JSON lines."
)
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as one JSON object.")
@click.option(
    "--strict",
    is_flag=True,
    help="Reject legacy syntax instead of rewriting it, and --set keys the workload does not declare.",
)
@click.option(
    "--runtime",
    "-r",
    type=click.Choice(["local", "distributed"]),
    default="local",
    envvar="NOETL_RUNTIME",
    show_envvar=True,
    help="Where to run: this process, or a NoETL server and its workers.",
)
@server_url_option
@click.option(
    "--max-parallel",
    type=click.IntRange(min=1),
    default=64,
    envvar="NOETL_MAX_PARALLEL",
    show_envvar=True,
    help="Default cap of a parallel loop without max_in_flight.",
)
@click.option(
    "--python-workers",
    type=click.IntRange(min=1),
    default=None,
    envvar="NOETL_PYTHON_WORKERS",
    show_envvar=True,
    help="Processes in the python tool pool [default: CPU count, at least 2].",
)
@click.option(
    "--python-memory-mb",
    type=click.IntRange(min=16),
    default=1024,
    metavar="MB",
    envvar="NOETL_PYTHON_MEMORY_MB",
    show_envvar=True,
    help="Address-space cap of each python task's process (a task's memory_mb overrides it).",
)
@click.option(
    "--file-root",
    "file_roots",
    multiple=True,
    type=click.Path(file_okay=False),
    envvar="NOETL_FILE_ROOTS",
    show_envvar=True,
    help="Directory the file tool may use (repeatable; the variable is ':'-separated) [default: the "
    "working directory]. Distributed: set it on the workers.",
)
@click.option(
    "--undefined",
    "undefined",
    type=click.Choice(["strict", "lenient"]),
    default="strict",
    envvar="NOETL_TEMPLATE_UNDEFINED",
    show_envvar=True,
    help="Rendering an undefined value into a task: strict fails the task; lenient (upstream's) renders "
    "it empty with a template.warning. A playbook's executor.spec.undefined wins [default: strict]. "
    "Distributed: set it on the workers.",
)
def run(
    playbook: str,
    sets: tuple[str, ...],
    payload: str | None,
    credentials: str | None,
    catalogs: tuple[str, ...],
    events_file: str | None,
    as_json: bool,
    strict: bool,
    runtime: str,
    server_url: str,
    max_parallel: int,
    python_workers: int | None,
    python_memory_mb: int,
    file_roots: tuple[str, ...],
    undefined: str,
) -> None:
    """Run PLAYBOOK in this process (no server, no database), or with --runtime distributed on a server."""
    if runtime == "distributed":
        from noetl.cli import distributed

        sys.exit(
            distributed.main(
                playbook,
                server_url=server_url,
                sets=sets,
                payload=payload,
                credentials=credentials,
                catalogs=catalogs,
                events_file=events_file,
                as_json=as_json,
                strict=strict,
            )
        )
    from noetl.cli import run as run_cmd

    code = run_cmd.main(
        playbook,
        sets=sets,
        payload=payload,
        credentials=credentials,
        catalogs=catalogs,
        events_file=events_file,
        as_json=as_json,
        strict=strict,
        max_parallel=max_parallel,
        python_workers=python_workers,
        python_memory_mb=python_memory_mb,
        file_roots=file_roots,
        undefined=undefined,
    )
    sys.exit(code)


@cli.command()
@click.argument("playbooks", nargs=-1, required=True, type=click.Path())
@click.option("--strict", is_flag=True, help="Reject legacy syntax instead of rewriting it.")
@click.option(
    "--catalog",
    "catalogs",
    multiple=True,
    type=click.Path(file_okay=False),
    envvar="NOETL_CATALOG",
    show_envvar=True,
    help="Directory of sub-playbooks: a sub-playbook path found in none of them is an error.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per playbook.")
def validate(playbooks: tuple[str, ...], strict: bool, catalogs: tuple[str, ...], as_json: bool) -> None:
    """Check playbooks without running them; exit 2 if any is invalid."""
    import json

    from noetl.runtime import loader
    from noetl.runtime.lint import lint

    failed = 0
    for path in playbooks:
        try:
            pb = loader.load(path, strict=strict)
            findings = lint(pb, path, catalogs)
        except NoetlError as exc:
            failed += 1
            if as_json:
                click.echo(json.dumps({"file": path, "valid": False, "error": exc.to_dict()}))
            else:
                click.echo(f"✗ {exc}", err=True)
            continue
        if findings.errors:
            failed += 1
            if as_json:
                errors = [e.to_dict() for e in findings.errors]
                click.echo(json.dumps({"file": path, "valid": False, "error": errors[0], "errors": errors}))
            else:
                for error in findings.errors:
                    click.echo(f"✗ {error}", err=True)
            continue
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "file": path,
                        "valid": True,
                        "path": pb.path,
                        "warnings": list(pb.warnings),
                        "notes": list(findings.notes),
                    }
                )
            )
        else:
            click.echo(f"✓ {path} ({pb.path}, {len(pb.workflow)} steps)")
            for warning in pb.warnings:
                click.echo(f"  warning: {warning}")
            for note in findings.notes:
                click.echo(f"  note: {note}")
    sys.exit(2 if failed else 0)


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the playbook format, with each installed tool's own task fields."""
    import json

    from noetl.tools import registry

    click.echo(json.dumps(registry.playbook_schema(), indent=2))


@cli.group()
def tool() -> None:
    """The tool kinds installed here (built-in and `noetl.tools` entry points)."""


@tool.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the descriptions as JSON.")
def tool_list(as_json: bool) -> None:
    """List the installed tool kinds."""
    import json

    from noetl.tools import registry

    tools = registry.describe_all()
    if as_json:
        click.echo(json.dumps(tools, indent=2))
        return
    for entry in tools:
        about = str(entry.get("description") or entry.get("error") or "").split("\n")[0]
        click.echo(f"{entry['kind']:<12} {entry.get('provider', '')} {entry.get('version', '')}  {about}")


@tool.command("describe")
@click.argument("kind")
def tool_describe(kind: str) -> None:
    """Print a tool's description, config JSON Schema, credential types, result shape and example."""
    import json

    from noetl.tools import registry

    click.echo(json.dumps(registry.describe(kind), indent=2))


# ---- the server and its workers ---------------------------------------------------------------------

DATABASE_URL_HELP = "PostgreSQL URL [default: the embedded PostgreSQL under the data directory]."
DATA_DIR_HELP = "Where the embedded PostgreSQL and the credentials key live [default: the user data dir]."
KEY_FILE_HELP = "File holding the base64 key that encrypts credentials (NOETL_ENCRYPTION_KEY gives the key)."


def database_options(command: F) -> F:
    command = click.option(
        "--data-dir",
        type=click.Path(file_okay=False),
        envvar="NOETL_DATA_DIR",
        show_envvar=True,
        help=DATA_DIR_HELP,
    )(command)
    return click.option(
        "--database-url", metavar="URL", envvar="NOETL_DATABASE_URL", show_envvar=True, help=DATABASE_URL_HELP
    )(command)


@cli.group()
def server() -> None:
    """The NoETL server: HTTP API, orchestrator and lease reaper."""


@server.command("start")
@click.option(
    "--host", default="127.0.0.1", envvar="NOETL_SERVER_HOST", show_envvar=True, help="Address to bind."
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8082, envvar="NOETL_SERVER_PORT", show_envvar=True
)
@database_options
@click.option(
    "--encryption-key-file",
    type=click.Path(dir_okay=False),
    envvar="NOETL_ENCRYPTION_KEY_FILE",
    show_envvar=True,
    help=KEY_FILE_HELP,
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    envvar="NOETL_LOG_LEVEL",
    show_envvar=True,
)
@click.option(
    "--insecure-loopback",
    is_flag=True,
    default=None,
    envvar="NOETL_SERVER_INSECURE_LOOPBACK",
    show_envvar=True,
    help="DEVELOPMENT ONLY: serve loopback clients that send no service token (any local process, "
    "user code included, can then use the API).",
)
@log_format_option
def server_start(
    host: str,
    port: int,
    database_url: str | None,
    data_dir: str | None,
    encryption_key_file: str | None,
    log_level: str,
    insecure_loopback: bool | None,
    log_format: str | None,
) -> None:
    """Serve the API until Ctrl-C or SIGTERM; migrates the database first."""
    from noetl.cli import admin

    admin.start_server(
        host=host,
        port=port,
        database=database_url,
        data=data_dir,
        key_file=encryption_key_file,
        log_level=log_level.lower(),
        insecure_loopback=insecure_loopback,
        log_format=log_format,
    )


@cli.group()
def worker() -> None:
    """Workers: processes that lease commands from the queue and run them."""


@worker.command("start")
@click.option(
    "--pool",
    "pools",
    multiple=True,
    metavar="NAME",
    envvar="NOETL_WORKER_POOLS",
    show_envvar=True,
    help="Pool to take commands from (repeatable, or comma-separated) [default: default].",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=16,
    envvar="NOETL_WORKER_CONCURRENCY",
    show_envvar=True,
    help="Commands run at the same time.",
)
@click.option(
    "--lease",
    type=click.FloatRange(min=0, min_open=True),
    default=15.0,
    metavar="SECONDS",
    envvar="NOETL_WORKER_LEASE_SECONDS",
    show_envvar=True,
    help="How long a claimed command stays ours without a heartbeat (heartbeats renew it every "
    "third of that): a dead worker's commands run again elsewhere within about this long.",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=30.0,
    metavar="SECONDS",
    envvar="NOETL_WORKER_GRACE_SECONDS",
    show_envvar=True,
    help="On SIGTERM, how long running commands may finish before they are released.",
)
@click.option(
    "--name", envvar="NOETL_WORKER_NAME", show_envvar=True, help="Name shown in `noetl worker list`."
)
@click.option(
    "--python-workers",
    type=click.IntRange(min=1),
    default=None,
    envvar="NOETL_WORKER_PYTHON_WORKERS",
    show_envvar=True,
    help="Processes in the python tool pool [default: CPU count].",
)
@click.option(
    "--python-memory-mb",
    type=click.IntRange(min=16),
    default=None,
    metavar="MB",
    envvar="NOETL_WORKER_PYTHON_MEMORY_MB",
    show_envvar=True,
    help="Address-space cap of each python task's process (a task's memory_mb overrides it) [default: 1024].",
)
@click.option(
    "--decide/--no-decide",
    default=None,
    envvar="NOETL_WORKER_DECIDE",
    show_envvar=True,
    help="Record and decide right after reporting when the execution is free (the fast path); "
    "--no-decide leaves every decision to the server [default: decide].",
)
@click.option(
    "--resources",
    metavar="NAME=UNITS,...",
    envvar="NOETL_WORKER_RESOURCES",
    show_envvar=True,
    help="Capacity for steps' spec.resources, e.g. gpu=2,memory_mb=16000 [default: none].",
)
@click.option(
    "--task-user",
    metavar="USER",
    envvar="NOETL_WORKER_TASK_USER",
    show_envvar=True,
    help="Unprivileged account python and shell tasks run as [default: nobody when the worker runs "
    "as root and nobody can start python, else the worker's own user].",
)
@click.option(
    "--python-scope-depth",
    type=click.IntRange(min=0),
    default=None,
    envvar="NOETL_WORKER_PYTHON_SCOPE_DEPTH",
    show_envvar=True,
    help="Leading catalog-path segments that make the scope a python child serves; a child never "
    "serves two scopes [default: 1].",
)
@database_options
@click.option(
    "--encryption-key-file",
    type=click.Path(dir_okay=False),
    envvar="NOETL_ENCRYPTION_KEY_FILE",
    show_envvar=True,
    help=KEY_FILE_HELP,
)
@log_format_option
def worker_start(
    pools: tuple[str, ...],
    concurrency: int,
    lease: float,
    grace: float,
    name: str | None,
    python_workers: int | None,
    python_memory_mb: int | None,
    decide: bool | None,
    resources: str | None,
    task_user: str | None,
    python_scope_depth: int | None,
    database_url: str | None,
    data_dir: str | None,
    encryption_key_file: str | None,
    log_format: str | None,
) -> None:
    """Run a worker until SIGTERM or Ctrl-C (a second one skips the grace period)."""
    from noetl.cli import admin

    names = tuple(part.strip() for item in pools for part in item.split(",") if part.strip())
    code = admin.start_worker(
        pools=names,
        concurrency=concurrency,
        lease=lease,
        database=database_url,
        data=data_dir,
        name=name,
        grace=grace,
        python_workers=python_workers,
        python_memory_mb=python_memory_mb,
        key_file=encryption_key_file,
        decide=decide,
        resources=resources,
        task_user=task_user,
        python_scope_depth=python_scope_depth,
        log_format=log_format,
    )
    sys.exit(code)


@worker.command("list")
@server_url_option
@json_option
def worker_list(server_url: str, as_json: bool) -> None:
    """Workers registered with the server."""
    from noetl.cli import remote

    with client(server_url) as api:
        remote.list_workers(api, as_json)


@cli.group()
def db() -> None:
    """The NoETL database (NOETL_DATABASE_URL, or the embedded PostgreSQL)."""


@db.command("init")
@database_options
@json_option
def db_init(database_url: str | None, data_dir: str | None, as_json: bool) -> None:
    """Create the schema (starting the embedded PostgreSQL if that is the one used)."""
    from noetl.cli import admin

    admin.db_init(database_url, data_dir, as_json)


@db.command("migrate")
@database_options
@json_option
def db_migrate(database_url: str | None, data_dir: str | None, as_json: bool) -> None:
    """Apply pending schema migrations."""
    from noetl.cli import admin

    admin.db_migrate(database_url, data_dir, as_json)


@db.command("status")
@database_options
@json_option
def db_status(database_url: str | None, data_dir: str | None, as_json: bool) -> None:
    """Show the schema version and pending migrations; exit 1 when some are pending."""
    from noetl.cli import admin

    sys.exit(admin.db_status(database_url, data_dir, as_json))


@db.command("prune")
@click.option(
    "--older-than",
    "older_than",
    required=True,
    metavar="DURATION",
    help="Delete executions that ended more than DURATION ago (30d, 12h, 2w).",
)
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@database_options
@json_option
def db_prune(
    older_than: str, dry_run: bool, database_url: str | None, data_dir: str | None, as_json: bool
) -> None:
    """Delete ended executions (events, commands, results) every export sink already has."""
    from noetl.cli import admin

    admin.db_prune(database_url, data_dir, older_than, dry_run, as_json)


@db.command("stop")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    envvar="NOETL_DATA_DIR",
    show_envvar=True,
    help=DATA_DIR_HELP,
)
def db_stop(data_dir: str | None) -> None:
    """Stop the embedded PostgreSQL now (it also stops when its last server or worker exits)."""
    from noetl.cli import admin

    admin.db_stop(data_dir)


# ---- talking to the server ---------------------------------------------------------------------------


@cli.group()
def catalog() -> None:
    """Playbooks registered with the server, by path and version."""


@catalog.command("register")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@server_url_option
@json_option
def catalog_register(files: tuple[str, ...], server_url: str, as_json: bool) -> None:
    """Register playbook FILES; prints each one's path, version and catalog_id."""
    from noetl.cli import remote

    with client(server_url) as api:
        remote.register(api, files, as_json)


@catalog.command("list")
@click.option("--path", help="Only the versions of this playbook path.")
@server_url_option
@json_option
def catalog_list(path: str | None, server_url: str, as_json: bool) -> None:
    """Every registered version of every playbook."""
    from noetl.cli import remote

    with client(server_url) as api:
        remote.catalog_list(api, path, as_json)


@catalog.command("get")
@click.argument("path")
@click.option("--version", type=click.IntRange(min=1), help="A version number [default: the latest].")
@server_url_option
@json_option
def catalog_get(path: str, version: int | None, server_url: str, as_json: bool) -> None:
    """Print the YAML of playbook PATH (with --json, the whole catalog entry)."""
    from noetl.cli import remote

    with client(server_url) as api:
        remote.catalog_get(api, path, version, as_json)


@cli.command("exec")
@click.argument("path")
@click.option("--version", type=click.IntRange(min=1), help="A version number [default: the latest].")
@click.option(
    "--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set a workload key (YAML scalar or JSON)."
)
@click.option("--payload", "--workload", "payload", metavar="JSON", help="Workload keys as a JSON object.")
@click.option("--priority", type=int, help="The execution's priority [default: executor.spec.priority].")
@server_url_option
@json_option
def exec_command(
    path: str,
    version: int | None,
    sets: tuple[str, ...],
    payload: str | None,
    priority: int | None,
    server_url: str,
    as_json: bool,
) -> None:
    """Start an execution of catalog playbook PATH; prints its execution id."""
    from noetl.cli import remote
    from noetl.cli.run import build_payload

    data = build_payload(sets, payload)
    with client(server_url) as api:
        remote.start(api, path, version, data, as_json, priority=priority)


@cli.command()
@click.argument("execution_id")
@server_url_option
@json_option
def status(execution_id: str, server_url: str, as_json: bool) -> None:
    """Status, current step and progress of an execution."""
    from noetl.cli import remote

    with client(server_url) as api:
        remote.status(api, execution_id, as_json)


@cli.command()
@click.argument("execution_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events until the execution ends.")
@click.option("--since", type=click.IntRange(min=0), default=0, metavar="EVENT_ID", help="Only later events.")
@click.option("--type", "event_type", metavar="EVENT_TYPE", help="Only events of this type.")
@server_url_option
@json_option
def events(
    execution_id: str, follow: bool, since: int, event_type: str | None, server_url: str, as_json: bool
) -> None:
    """The event log of an execution (JSON lines with --json)."""
    from noetl.cli import remote

    with client(server_url) as api:
        remote.show_events(
            api, execution_id, follow=follow, since=since, event_type=event_type, as_json=as_json
        )


@cli.command()
@click.argument("execution_id")
@click.option("--reason", help="Recorded with the cancellation.")
@click.option("--no-cascade", is_flag=True, help="Leave the execution's child executions running.")
@server_url_option
@json_option
def cancel(execution_id: str, reason: str | None, no_cascade: bool, server_url: str, as_json: bool) -> None:
    """Cancel a running execution (and its child executions)."""
    from noetl.cli import remote

    with client(server_url) as api:
        remote.cancel(api, execution_id, reason, not no_cascade, as_json)


@cli.group()
def executions() -> None:
    """Executions known to the server."""


@executions.command("list")
@click.option(
    "--status",
    type=click.Choice(["RUNNING", "COMPLETED", "FAILED", "CANCELLED"], case_sensitive=False),
    help="Only executions with this status.",
)
@click.option("--path", help="Only executions of this playbook path.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, help="At most this many.")
@server_url_option
@json_option
def executions_list(status: str | None, path: str | None, limit: int, server_url: str, as_json: bool) -> None:
    """The newest executions with their status."""
    from noetl.cli import remote

    with client(server_url) as api:
        remote.list_executions(api, status, path, limit, as_json)


@cli.group()
def credential() -> None:
    """Credentials stored (encrypted) by the server, used by tasks' `auth` and keychains."""


@credential.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@server_url_option
@json_option
def credential_import(file: str, server_url: str, as_json: bool) -> None:
    """Store every credential of FILE (the format of `noetl run --credentials`)."""
    from noetl.cli import remote

    with client(server_url) as api:
        remote.import_credentials(api, file, as_json)


@credential.command("list")
@click.option("--type", "kind", help="Only credentials of this type.")
@click.option("--query", "-q", help="Only names, descriptions or tags containing this text.")
@server_url_option
@json_option
def credential_list(kind: str | None, query: str | None, server_url: str, as_json: bool) -> None:
    """Names and types of the stored credentials (never their data)."""
    from noetl.cli import remote

    with client(server_url) as api:
        remote.list_credentials(api, kind, query, as_json)


@credential.command("get")
@click.argument("name")
@click.option("--include-data", is_flag=True, help="Include the decrypted secret data.")
@server_url_option
def credential_get(name: str, include_data: bool, server_url: str) -> None:
    """Print credential NAME as JSON."""
    from noetl.cli import remote

    with client(server_url) as api:
        remote.get_credential(api, name, include_data)


@credential.command("delete")
@click.argument("name")
@server_url_option
@json_option
def credential_delete(name: str, server_url: str, as_json: bool) -> None:
    """Delete credential NAME."""
    from noetl.cli import remote

    with client(server_url) as api:
        remote.delete_credential(api, name, as_json)


# Commands defined in modules of their own: access control (`noetl token`, `noetl gateway`,
# `noetl credential add | rotate-key | new-key`), `noetl migrate`, and scheduling (`noetl schedule`,
# `noetl trigger`, `noetl resource`, `noetl queue`).
import importlib  # noqa: E402

from noetl.cli import auth as _auth  # noqa: E402
from noetl.cli import migrate as _migrate  # noqa: E402

# noetl.cli.schedule imports this module's shared options, so it is loaded once `cli` exists.
_scheduling = importlib.import_module("noetl.cli.schedule")
_auth.register(cli, credential)
cli.add_command(_migrate.migrate)
for _command in (_scheduling.schedule, _scheduling.trigger, _scheduling.resource, _scheduling.queue):
    cli.add_command(_command)
_telemetry = importlib.import_module("noetl.cli.telemetry")
cli.add_command(_telemetry.export)
cli.add_command(_telemetry.stats)


def main() -> None:
    cli(prog_name="noetl")


if __name__ == "__main__":
    main()
