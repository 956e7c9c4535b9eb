"""``noetl export status | backfill`` and ``noetl stats PATH``: telemetry from the shell.

* ``noetl export status``: each sink's events exported and its lag (events and seconds behind).
* ``noetl export backfill --since 2026-12-01T00:00`` (or ``--window 24h``): send those events again;
  the sink counts each event once, so a backfill over what it already has changes no query result.
* ``noetl stats PATH [--window 24h]``: per step calls, failure and retry rates, p50/p95/max duration.
"""

from __future__ import annotations

import json
from typing import Any

import click

from noetl.cli.main import client, json_option, server_url_option


@click.group("export")
def export() -> None:
    """The event export to ClickHouse (NOETL_EXPORT_CLICKHOUSE_URL on the server)."""


@export.command("status")
@server_url_option
@json_option
def export_status(server_url: str, as_json: bool) -> None:
    """Events exported and the lag of each sink."""
    with client(server_url) as api:
        found = api.request("GET", "/api/export/status")
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if not found["configured"]:
        click.echo("no export sink is configured (set NOETL_EXPORT_CLICKHOUSE_URL on the server)")
    for sink in found["sinks"]:
        line = (
            f"{sink['sink']}: {sink['exported']} events exported, {sink['lag_events']} behind "
            f"({sink['lag_seconds']:.1f}s)"
        )
        click.echo(line + (f"; last error: {sink['last_error']}" if sink["last_error"] else ""))


@export.command("backfill")
@click.option("--since", metavar="TIME", help="Re-send events written at or after this ISO 8601 time.")
@click.option("--window", metavar="DURATION", help="Or: re-send the last DURATION (30m, 24h, 7d).")
@server_url_option
def export_backfill(since: str | None, window: str | None, server_url: str) -> None:
    """Send events again (the sink counts each event once; the cursor does not move)."""
    body: dict[str, Any] = {"since": since, "window": window}
    with client(server_url) as api:
        found = api.request("POST", "/api/export/backfill", json=body)
    click.echo(f"{found['sink']}: sent {found['events']} events written since {found['since']}")


@click.command("stats")
@click.argument("path")
@click.option("--window", default="24h", show_default=True, help="How far back: 30m, 24h, 7d, 2w.")
@server_url_option
@json_option
def stats(path: str, window: str, server_url: str, as_json: bool) -> None:
    """Per-step duration (p50/p95/max), failure and retry rates of PATH's executions."""
    from urllib.parse import quote

    from noetl.cli import remote  # not at module level: `noetl run` must not load the client

    with client(server_url) as api:
        found = api.request("GET", f"/api/stats/{quote(path, safe='/')}", params={"window": window})
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    totals = found["executions"]
    click.echo(
        f"{path}: {totals.get('executions', 0)} executions in {window} "
        f"({totals.get('completed', 0)} completed, {totals.get('failed', 0)} failed, "
        f"{totals.get('cancelled', 0)} cancelled, {totals.get('running', 0)} running; from {found['source']})"
    )
    columns = ["step", "calls", "p50_ms", "p95_ms", "max_ms", "failure_rate", "retry_rate"]
    rows = [["" if s.get(c) is None else str(s[c]) for c in columns] for s in found["steps"]]
    if rows:
        remote.table([c.upper() for c in columns], rows)
