"""Running NoETL's processes and looking after its database: ``noetl server start``,
``noetl worker start``, ``noetl db init | migrate | status``.

Settings enter here: each command starts from the ``NOETL_*`` environment (the settings classes'
``from_env``) and lays the flags given on the command line over it. Without a database URL every
command uses the embedded PostgreSQL (``noetl.store.embedded``) under the data directory
(``NOETL_DATA_DIR``, default the user's data directory, e.g. ``~/.local/share/noetl``): its
``pg/`` subdirectory holds the database and ``credentials.key`` the key that encrypts stored
credentials, so a server and workers on one machine find both without configuration.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from noetl.cli import starting

KEY_FILE_NAME = "credentials.key"


# ---- where things live ------------------------------------------------------------------------------


def data_dir(configured: str | Path | None) -> Path:
    """``--data-dir``/``NOETL_DATA_DIR``, else the user's data directory for NoETL."""
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("noetl"))


def database_url(configured: str | None, data: str | Path | None) -> str:
    """The configured URL, else the embedded PostgreSQL's (started if it is not running)."""
    if configured:
        return configured
    from noetl.store import embedded
    from noetl.store.db import redact

    pgdata = data_dir(data) / "pg"
    url = embedded.ensure(pgdata)
    click.echo(f"noetl: using the embedded PostgreSQL; its data lives in {pgdata} ({redact(url)})", err=True)
    return url


# ---- server -----------------------------------------------------------------------------------------


def start_server(
    *,
    host: str | None,
    port: int | None,
    database: str | None,
    data: str | None,
    key_file: str | None,
    log_level: str | None,
    insecure_loopback: bool | None = None,
    log_format: str | None = None,
) -> None:
    """``noetl server start``: serve the HTTP API until SIGINT/SIGTERM."""
    from noetl.server.main import serve
    from noetl.server.settings import ServerSettings

    settings = ServerSettings.from_env(os.environ)
    flags: dict[str, Any] = {
        "host": host,
        "port": port,
        "database_url": database,
        "data_dir": Path(data).expanduser() if data else None,
        "encryption_key_file": Path(key_file).expanduser() if key_file else None,
        "log_level": log_level,
        "insecure_loopback": insecure_loopback,
        "log_format": log_format,
    }
    settings = replace(settings, **{k: v for k, v in flags.items() if v is not None})
    if settings.database_url and settings.data_dir is None:
        from noetl.server.credentials import cipher

        cipher(settings)  # an own database and no key: refuse before anything starts
    with starting.announced(data_dir(settings.data_dir), settings.port):
        url = database_url(settings.database_url, settings.data_dir)
        settings = replace(settings, database_url=url, data_dir=data_dir(settings.data_dir))
        click.echo(f"noetl: serving the API on http://{settings.host}:{settings.port}", err=True)
        serve(settings)


# ---- worker -----------------------------------------------------------------------------------------


def start_worker(
    *,
    pools: tuple[str, ...],
    concurrency: int | None,
    lease: float | None,
    database: str | None,
    data: str | None,
    name: str | None,
    grace: float | None,
    python_workers: int | None,
    key_file: str | None,
    decide: bool | None = None,
    python_memory_mb: int | None = None,
    resources: str | None = None,
    task_user: str | None = None,
    python_scope_depth: int | None = None,
    log_format: str | None = None,
) -> int:
    """``noetl worker start``: lease and run commands until SIGTERM/SIGINT; the exit code."""
    from noetl.worker import main
    from noetl.worker.settings import WorkerSettings, parse_resources

    env = dict(os.environ)
    embedded = not (database or env.get("NOETL_DATABASE_URL"))
    url = database_url(database or env.get("NOETL_DATABASE_URL"), data)
    prepare_schema(url)
    settings = WorkerSettings.from_env(
        env,
        database_url=url,
        pools=pools or None,
        concurrency=concurrency,
        lease_seconds=lease,
        name=name,
        grace_seconds=grace,
        python_workers=python_workers,
        python_memory_mb=python_memory_mb,
        encryption_key_file=key_file or default_key_file(env, data, embedded),
        decide=decide,
        resources=parse_resources(resources) if resources else None,
        task_user=task_user,
        python_scope_depth=python_scope_depth,
        log_format=log_format,
    )
    click.echo(
        f"noetl: worker {settings.worker_id} on pools {', '.join(settings.pools)} "
        f"with {settings.concurrency} slots",
        err=True,
    )
    return main(settings)


def prepare_schema(url: str) -> None:
    """Apply pending migrations: the worker may start before the server (both are safe, the
    migrations run under an advisory lock). An unreachable database is left to the worker, which
    retries its connection with backoff."""
    from noetl.store.errors import StoreUnavailable

    try:
        _apply(url)
    except StoreUnavailable as exc:
        click.echo(
            f"noetl: cannot check the schema yet ({exc}); the worker keeps trying to connect", err=True
        )


def default_key_file(env: dict[str, str], data: str | None, embedded: bool) -> str | None:
    """The server's default key file on this machine, when no key is configured: always with the
    embedded database (same machine by definition), else only if that file exists."""
    if env.get("NOETL_ENCRYPTION_KEY") or env.get("NOETL_ENCRYPTION_KEY_FILE"):
        return None
    path = data_dir(data) / KEY_FILE_NAME
    return str(path) if embedded or path.exists() else None


# ---- database ---------------------------------------------------------------------------------------


def db_init(database: str | None, data: str | None, as_json: bool) -> None:
    """``noetl db init``: make the database ready (start the embedded one if needed) and migrate it."""
    url = database_url(database, data)
    applied = _apply(url)
    report = _status(url)
    if as_json:
        click.echo(json.dumps({"applied": applied, **report}))
    else:
        click.echo(f"database ready: schema version {report['current']} (applied now: {_versions(applied)})")


def db_migrate(database: str | None, data: str | None, as_json: bool) -> None:
    """``noetl db migrate``: apply the migrations this NoETL has and the database lacks."""
    url = database_url(database, data)
    applied = _apply(url)
    if as_json:
        click.echo(json.dumps({"applied": applied}))
    elif applied:
        click.echo(f"applied migrations {_versions(applied)}")
    else:
        click.echo("the schema is up to date")


def db_status(database: str | None, data: str | None, as_json: bool) -> int:
    """``noetl db status``: schema version and pending migrations; exit 1 when some are pending."""
    url = database_url(database, data)
    report = _status(url)
    if as_json:
        click.echo(json.dumps(report))
    else:
        click.echo(f"schema version {report['current']} of {report['latest']}")
        for item in report["applied"]:
            click.echo(f"  applied  {item['version']:04d} {item['name']}  {item['applied_at']}")
        for item in report["pending"]:
            click.echo(f"  pending  {item['version']:04d} {item['name']}")
        if report["pending"]:
            click.echo("run `noetl db migrate` to apply the pending migrations", err=True)
    return 1 if report["pending"] else 0


def db_prune(database: str | None, data: str | None, older_than: str, dry_run: bool, as_json: bool) -> None:
    """``noetl db prune --older-than 30d [--dry-run]``: delete ended executions that every export
    sink has; prints what went (or would go) and the tables' sizes before and after."""
    from datetime import UTC, datetime, timedelta

    from noetl.dsl import durations
    from noetl.store import db, prune

    cutoff = datetime.now(UTC) - timedelta(seconds=durations.seconds(older_than, "--older-than"))
    url = database_url(database, data)

    async def run() -> prune.Pruned:
        async with await db.connect(url) as conn:
            return await prune.prune(conn, cutoff, dry_run=dry_run)

    found = asyncio.run(run())
    if as_json:
        click.echo(
            json.dumps({"dry_run": dry_run, "cutoff": cutoff.isoformat(), **dataclasses.asdict(found)})
        )
        return
    verb = "would delete" if dry_run else "deleted"
    click.echo(
        f"{verb} {found.executions} executions that ended before {cutoff:%Y-%m-%d %H:%M} UTC: "
        f"{found.events} events, {found.commands} commands, {found.results} stored results"
    )
    if found.held_for_export:
        click.echo(f"kept {found.held_for_export} old enough that an export sink has not taken yet")
    for table, before in found.sizes_before.items():
        click.echo(
            f"  {table:<10} {before / 1e6:10.1f} MB -> {found.sizes_after.get(table, 0) / 1e6:10.1f} MB"
        )


def db_stop(data: str | None) -> None:
    """``noetl db stop``: stop the embedded PostgreSQL under the data directory, if it runs."""
    from noetl.store import embedded

    pgdata = data_dir(data) / "pg"
    if embedded.stop(pgdata):
        click.echo(f"stopped the embedded PostgreSQL in {pgdata}")
    else:
        click.echo(f"the embedded PostgreSQL in {pgdata} is not running")


def _apply(url: str) -> list[int]:
    from noetl.store import migrate

    return asyncio.run(migrate.apply(url))


def _status(url: str) -> dict[str, Any]:
    from noetl.store import migrate

    return asyncio.run(migrate.status(url))


def _versions(applied: list[int]) -> str:
    return ", ".join(f"{v:04d}" for v in applied) or "none"


__all__ = [
    "data_dir",
    "database_url",
    "db_init",
    "db_migrate",
    "db_status",
    "db_stop",
    "start_server",
    "start_worker",
]
