"""Access-control commands: ``noetl token``, ``noetl gateway start``, ``noetl credential add |
rotate-key | new-key`` (registered on the main group by :func:`register`).

Tokens and key rotation work on the database directly (like ``noetl db``): they are operator tasks
done on a machine that reaches PostgreSQL, and an API key cannot be created through the gateway it
would unlock. ``credential add`` goes through the server (or the gateway, with ``--gateway``).
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from noetl.cli.options import log_format_option
from noetl.errors import UsageError

DATABASE_HELP = "PostgreSQL URL (default: the embedded database under the data directory)."


def database_options(command: Any) -> Any:
    command = click.option(
        "--database-url", envvar="NOETL_DATABASE_URL", show_envvar=True, help=DATABASE_HELP
    )(command)
    return click.option(
        "--data-dir", envvar="NOETL_DATA_DIR", show_envvar=True, help="NoETL's data directory."
    )(command)


def register(cli: click.Group, credential: click.Group) -> None:
    cli.add_command(token)
    cli.add_command(gateway)
    credential.add_command(credential_add)
    credential.add_command(rotate_key)
    credential.add_command(new_key)


# ---- API keys -------------------------------------------------------------------------------------


@click.group()
def token() -> None:
    """API keys for the gateway (stored hashed; a key is shown once, when created)."""


@token.command("create")
@click.option("--name", required=True, help="A name for the key (unique), e.g. the system that uses it.")
@click.option(
    "--role",
    type=click.Choice(["admin", "operator", "developer", "viewer"]),
    default="viewer",
    show_default=True,
)
@click.option("--path", "paths", multiple=True, metavar="PATTERN", help="Catalog path pattern (repeatable).")
@click.option("--expires-in-days", type=float, help="Expire the key after this many days.")
@database_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def token_create(
    name: str,
    role: str,
    paths: tuple[str, ...],
    expires_in_days: float | None,
    database_url: str | None,
    data_dir: str | None,
    as_json: bool,
) -> None:
    """Create an API key and print it (once: only its hash is stored)."""
    from noetl.store import auth

    expires = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None

    async def create(conn: Any) -> tuple[str, dict[str, Any]]:
        return await auth.create_key(conn, name, role, paths or ("*",), expires)

    key, record = _run(database_url, data_dir, create)
    if as_json:
        click.echo(json.dumps({"key": key, **record}))
        return
    click.echo(key)
    click.echo(
        f"API key '{name}' (role {role}, paths {', '.join(record['paths'])}) created; "
        "store it now, it is not shown again",
        err=True,
    )


@token.command("list")
@database_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def token_list(database_url: str | None, data_dir: str | None, as_json: bool) -> None:
    """API keys: names, roles, paths, state (never the keys)."""
    from noetl.store import auth

    found = _run(database_url, data_dir, auth.list_keys)
    if as_json:
        click.echo(json.dumps(found))
        return
    from noetl.cli.remote import table

    rows = [
        [
            key["name"],
            key["role"],
            ",".join(key["paths"]),
            f"{key['prefix']}...",
            "revoked" if key["revoked_at"] else "active",
        ]
        for key in found
    ]
    table(["NAME", "ROLE", "PATHS", "PREFIX", "STATE"], rows)


@token.command("revoke")
@click.argument("name")
@database_options
def token_revoke(name: str, database_url: str | None, data_dir: str | None) -> None:
    """Revoke the API key NAME (the gateway stops accepting it within seconds)."""
    from noetl.store import auth

    async def revoke(conn: Any) -> bool:
        return await auth.revoke_key(conn, name)

    if not _run(database_url, data_dir, revoke):
        raise UsageError(f"no active API key named '{name}'")
    click.echo(f"revoked API key {name}")


# ---- gateway --------------------------------------------------------------------------------------


@click.group()
def gateway() -> None:
    """The public entry point: authentication, authorization, rate limits, audit."""


@gateway.command("start")
@click.option("--host", envvar="NOETL_GATEWAY_HOST", show_envvar=True, default="127.0.0.1")
@click.option("--port", envvar="NOETL_GATEWAY_PORT", show_envvar=True, type=int, default=8080)
@click.option(
    "--server-url",
    envvar="NOETL_SERVER_URL",
    show_envvar=True,
    default="http://127.0.0.1:8082",
    metavar="URL",
)
@database_options
@log_format_option
def gateway_start(
    host: str,
    port: int,
    server_url: str,
    database_url: str | None,
    data_dir: str | None,
    log_format: str | None,
) -> None:
    """Serve /noetl/* in front of the server until SIGINT/SIGTERM.

    JWT settings, the service token and rate limits come from NOETL_GATEWAY_JWT_SECRET,
    NOETL_GATEWAY_JWKS_URL, NOETL_GATEWAY_JWT_AUDIENCE, NOETL_GATEWAY_JWT_ISSUER, NOETL_SERVICE_TOKEN,
    NOETL_GATEWAY_RATE, NOETL_GATEWAY_BURST, NOETL_GATEWAY_MAX_BODY_BYTES, NOETL_GATEWAY_PREAUTH_RATE,
    NOETL_GATEWAY_TRUSTED_PROXIES. Without NOETL_SERVICE_TOKEN a gateway in front of a server on
    this machine reads the server's service.token from the data directory.
    """
    from noetl.cli.admin import data_dir as directory
    from noetl.cli.admin import database_url as resolve
    from noetl.gateway.main import serve
    from noetl.gateway.settings import GatewaySettings
    from noetl.store import servicetoken

    url = resolve(database_url, data_dir)
    settings = GatewaySettings.from_env(
        os.environ,
        host=host,
        port=port,
        server_url=server_url,
        database_url=url,
        log_format=log_format,
        service_token_file=servicetoken.path(directory(data_dir)),
    )
    click.echo(f"noetl: gateway on http://{host}:{port}/noetl/ -> {server_url}/api/", err=True)
    serve(settings)


# ---- credentials ----------------------------------------------------------------------------------


@click.command("add")
@click.argument("name")
@click.option("--type", "kind", required=True, help="Credential type, e.g. postgres, bearer, oauth2.")
@click.option(
    "--data", "data", required=True, metavar="JSON|@FILE", help="The secret fields: JSON, or @file.json."
)
@click.option(
    "--allow-path", "allow_paths", multiple=True, metavar="PATTERN", help="Only playbooks matching."
)
@click.option("--description", help="A description shown in lists.")
@click.option("--server-url", envvar="NOETL_SERVER_URL", show_envvar=True, default="http://127.0.0.1:8082")
def credential_add(
    name: str, kind: str, data: str, allow_paths: tuple[str, ...], description: str | None, server_url: str
) -> None:
    """Store credential NAME, encrypted; --allow-path limits which playbooks may use it."""
    from noetl.cli.client import Client

    fields = _data(data)
    with Client(server_url) as api:
        saved = api.put_credential(name, kind, fields, description=description, allow_paths=list(allow_paths))
    scope = ", ".join(saved.get("allow_paths") or ["any playbook"])
    click.echo(f"stored credential {name} (type {kind}; usable by {scope})")


@click.command("new-key")
def new_key() -> None:
    """Print a fresh encryption key (base64 of 32 random bytes) for NOETL_ENCRYPTION_KEY."""
    from noetl.store import crypto

    click.echo(crypto.new_key())


@click.command("rotate-key")
@click.option("--new-key", "new", metavar="BASE64", help="The new key (default: generate one).")
@click.option(
    "--key-file", envvar="NOETL_ENCRYPTION_KEY_FILE", show_envvar=True, help="The key file to rotate."
)
@database_options
def rotate_key(new: str | None, key_file: str | None, database_url: str | None, data_dir: str | None) -> None:
    """Re-wrap every stored credential under a new key, without downtime.

    With a key file (the default setup) the new key is written first, ahead of the old one; running
    servers and workers read the file again when they meet the new key. With NOETL_ENCRYPTION_KEY,
    give every process the new key in NOETL_ENCRYPTION_PREVIOUS_KEYS first, run this with --new-key,
    then make it NOETL_ENCRYPTION_KEY (see docs/security.md).
    """
    from noetl.cli.admin import KEY_FILE_NAME
    from noetl.cli.admin import data_dir as resolve_dir
    from noetl.store import credentials, crypto

    new = new or crypto.new_key()
    fresh = crypto.decode_key(new, "--new-key")
    current = os.environ.get("NOETL_ENCRYPTION_KEY")
    previous = crypto.split_keys(os.environ.get("NOETL_ENCRYPTION_PREVIOUS_KEYS"))
    if current:
        old = [crypto.decode_key(text, "NOETL_ENCRYPTION_KEY") for text in [current, *previous]]
        path = None
    else:
        path = Path(key_file).expanduser() if key_file else resolve_dir(data_dir) / KEY_FILE_NAME
        if not path.exists():
            raise UsageError(
                f"no key file at {path}: nothing to rotate (set --key-file or NOETL_ENCRYPTION_KEY)"
            )
        keys = [text for text in crypto.split_keys(path.read_text(encoding="ascii"))]
        old = [crypto.decode_key(text, f"key file {path}") for text in keys]
        crypto.write_key_file(path, [new, *keys])
        click.echo(f"noetl: {path} now starts with the new key (the old ones stay for reading)", err=True)
    cipher = crypto.Cipher(fresh, old)

    async def rotate(conn: Any) -> dict[str, int]:
        return await credentials.rotate(conn, cipher)

    counts = _run(database_url, data_dir, rotate)
    click.echo(
        f"re-wrapped {counts['rewrapped']} credentials under key {cipher.key_id} "
        f"({counts['unchanged']} already were)"
    )
    if path is None:
        click.echo("now set NOETL_ENCRYPTION_KEY to the new key on every process:", err=True)
        click.echo(new)


def _data(text: str) -> dict[str, Any]:
    if text.startswith("@"):
        try:
            text = Path(text[1:]).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read {text[1:]}: {exc.strerror or exc}", field="--data") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--data is not JSON: {exc}", field="--data") from None
    if not isinstance(value, dict):
        raise UsageError("--data must be a JSON object of fields", field="--data")
    return value


def _run(database_url: str | None, data_dir: str | None, operation: Any) -> Any:
    from noetl.cli.admin import database_url as resolve
    from noetl.store import db, migrate

    url = resolve(database_url, data_dir)

    async def go() -> Any:
        await migrate.apply(url)
        async with await db.connect(url) as conn:
            return await operation(conn)

    return asyncio.run(go())
