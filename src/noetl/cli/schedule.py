"""``noetl schedule``, ``noetl trigger``, ``noetl resource`` and ``noetl queue``: scheduling from the shell.

Every command is one or two API requests (docs/scheduling.md shows them at work):

* ``noetl schedule add PATH --cron '*/5 * * * *' | --interval 30s [--payload JSON] [--timezone TZ]
  [--misfire skip|run_once|catch_up] [--catch-up-limit N] [--name NAME]`` and
  ``noetl schedule list|pause|resume|delete``. PATH is a catalog path, or a playbook file that is
  registered first.
* ``noetl trigger add NAME PATH --secret S``, ``list``, ``delete``: webhook triggers.
* ``noetl resource set NAME CAPACITY``, ``list``, ``delete``: global resource caps.
* ``noetl queue``: ready, in flight and the oldest wait by pool, priority and concurrency key.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import click

from noetl.cli.main import client, json_option, server_url_option
from noetl.errors import UsageError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def seconds(text: str) -> float:
    """``30s``, ``5m``, ``1h``, ``500ms`` or a bare number of seconds; UsageError otherwise."""
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise UsageError(f"--interval {text!r} is not a positive duration like 30s, 5m, 1h")
    return float(match.group(1)) * _SECONDS[match.group(2) or "s"]


def _payload(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--payload is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError("--payload must be a JSON object")
    return value


def _catalog_path(api: Any, path: str) -> str:
    """A file is registered and its catalog path used; anything else is a catalog path already."""
    if os.path.isfile(path):
        from noetl.cli import remote

        return str(remote.register_file(api, path)["path"])
    return path


def _show(items: list[dict[str, Any]], columns: list[str], as_json: bool, key: str) -> None:
    from noetl.cli import remote

    if as_json:
        remote.emit({key: items}, indent=2)
        return
    rows = [["" if item.get(c) is None else str(item.get(c)) for c in columns] for item in items]
    remote.table([c.upper() for c in columns], rows)


# ---- schedules ----------------------------------------------------------------------------------


@click.group()
def schedule() -> None:
    """Start executions on a cron expression or at an interval."""


@schedule.command("add")
@click.argument("path")
@click.option("--cron", metavar="EXPR", help="5 fields (min hour day month weekday), or 6 with seconds.")
@click.option("--interval", metavar="DURATION", help="Every DURATION, e.g. 30s, 5m, 1h.")
@click.option("--payload", metavar="JSON", help="Workload keys for every run, as a JSON object.")
@click.option("--timezone", default="UTC", help="IANA time zone the cron expression is read in.")
@click.option(
    "--misfire",
    type=click.Choice(["skip", "run_once", "catch_up"]),
    default="run_once",
    help="Runs missed while no server ran: none, one, or each (up to --catch-up-limit).",
)
@click.option("--catch-up-limit", type=click.IntRange(min=1), default=10, help="Most missed runs caught up.")
@click.option("--name", help="Schedule name [default: the playbook path].")
@server_url_option
@json_option
def schedule_add(
    path: str,
    cron: str | None,
    interval: str | None,
    payload: str | None,
    timezone: str,
    misfire: str,
    catch_up_limit: int,
    name: str | None,
    server_url: str,
    as_json: bool,
) -> None:
    """Schedule runs of PATH (a catalog path, or a playbook file to register first)."""
    if (cron is None) == (interval is None):
        raise UsageError("give exactly one of --cron and --interval")
    with client(server_url) as api:
        target = _catalog_path(api, path)
        body = {
            "name": name or target,
            "path": target,
            "cron": cron,
            "interval_seconds": seconds(interval) if interval else None,
            "timezone": timezone,
            "payload": _payload(payload),
            "misfire": misfire,
            "catch_up_limit": catch_up_limit,
        }
        saved = api.request("POST", "/api/schedules", json=body)
    if as_json:
        click.echo(json.dumps(saved, indent=2))
    else:
        click.echo(f"schedule {saved['name']}: {saved['path']} next at {saved['next_run_at']}")


@schedule.command("list")
@server_url_option
@json_option
def schedule_list(server_url: str, as_json: bool) -> None:
    """Schedules with their next and last runs."""
    with client(server_url) as api:
        found = api.request("GET", "/api/schedules")["schedules"]
    for item in found:
        item["every"] = item["cron"] or f"{item['interval_seconds']:g}s"
    columns = ["name", "path", "every", "timezone", "paused", "next_run_at", "runs", "misfire"]
    _show(found, columns, as_json, "schedules")


def _one(action: str) -> click.Command:
    @click.command(action)
    @click.argument("name")
    @server_url_option
    @json_option
    def command(name: str, server_url: str, as_json: bool) -> None:
        with client(server_url) as api:
            if action == "delete":
                done = api.request("DELETE", f"/api/schedules/{_segment(name)}")
            else:
                done = api.request("POST", f"/api/schedules/{_segment(name)}/{action}")
        click.echo(json.dumps(done, indent=2) if as_json else f"schedule {name}: {action}d")

    command.help = f"{action.capitalize()} schedule NAME."
    return command


for _action in ("pause", "resume", "delete"):
    schedule.add_command(_one(_action))


def _segment(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


# ---- triggers -----------------------------------------------------------------------------------


@click.group()
def trigger() -> None:
    """Webhook triggers: POST /api/triggers/NAME, signed, starts PATH with the body as payload."""


@trigger.command("add")
@click.argument("name")
@click.argument("path")
@click.option(
    "--secret",
    envvar="NOETL_TRIGGER_SECRET",
    show_envvar=True,
    required=True,
    help="HMAC-SHA256 key (16+ characters) callers sign the body with.",
)
@server_url_option
def trigger_add(name: str, path: str, secret: str, server_url: str) -> None:
    """Create or replace trigger NAME starting PATH (catalog path, or a file to register)."""
    with client(server_url) as api:
        target = _catalog_path(api, path)
        api.request("PUT", f"/api/triggers/{_segment(name)}/config", json={"path": target, "secret": secret})
    click.echo(f"trigger {name}: POST {server_url}/api/triggers/{name} starts {target}")


@trigger.command("list")
@server_url_option
@json_option
def trigger_list(server_url: str, as_json: bool) -> None:
    """Triggers (without their secrets)."""
    with client(server_url) as api:
        found = api.request("GET", "/api/triggers")["triggers"]
    _show(found, ["name", "path", "enabled", "fired"], as_json, "triggers")


@trigger.command("delete")
@click.argument("name")
@server_url_option
def trigger_delete(name: str, server_url: str) -> None:
    """Delete trigger NAME."""
    with client(server_url) as api:
        api.request("DELETE", f"/api/triggers/{_segment(name)}/config")
    click.echo(f"trigger {name}: deleted")


# ---- global resources ---------------------------------------------------------------------------


@click.group()
def resource() -> None:
    """Named global resources: cap the units running commands hold across all workers."""


@resource.command("set")
@click.argument("name")
@click.argument("capacity", type=click.IntRange(min=0))
@server_url_option
def resource_set(name: str, capacity: int, server_url: str) -> None:
    """At most CAPACITY units of NAME in use at once (steps ask with spec.resources: {NAME: 1})."""
    with client(server_url) as api:
        api.request("PUT", f"/api/resources/{_segment(name)}", json={"capacity": capacity})
    click.echo(f"resource {name}: capacity {capacity}")


@resource.command("list")
@server_url_option
@json_option
def resource_list(server_url: str, as_json: bool) -> None:
    """Global resources with capacity and units in use."""
    with client(server_url) as api:
        found = api.request("GET", "/api/resources")["resources"]
    _show(found, ["name", "capacity", "in_use"], as_json, "resources")


@resource.command("delete")
@click.argument("name")
@server_url_option
def resource_delete(name: str, server_url: str) -> None:
    """Delete resource NAME (it becomes a worker resource again)."""
    with client(server_url) as api:
        api.request("DELETE", f"/api/resources/{_segment(name)}")
    click.echo(f"resource {name}: deleted")


# ---- the queue ----------------------------------------------------------------------------------


@click.command("queue")
@server_url_option
@json_option
def queue(server_url: str, as_json: bool) -> None:
    """Depth, in-flight and oldest wait by pool, priority and concurrency key."""
    with client(server_url) as api:
        found = api.request("GET", "/api/queue")
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    groups = found["groups"]
    if not groups:
        click.echo("the queue is empty: no command is waiting or running")
        return
    for group in groups:
        group["key"] = group["concurrency_key"] or "-"
        group["oldest_wait"] = f"{group['oldest_wait_seconds']:.1f}s"
    _show(groups, ["pool", "priority", "key", "ready", "in_flight", "oldest_wait"], False, "groups")
