"""The commands that talk to a NoETL server: catalog, exec, status, events, cancel, executions,
credentials and the worker list.

Each public function is the body of one ``noetl`` command: it takes an open
:class:`~noetl.cli.client.Client` and the command's options and prints - for people a line per thing
or a small table, with ``as_json`` one JSON document (JSON lines for event streams, in the same
form as ``noetl run --events``). Data goes to stdout, so ``id=$(noetl exec PATH)`` works.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import click

from noetl.cli.client import Client, Conflict, JSONObject, NotFound
from noetl.engine import events as ev
from noetl.errors import Location, PlaybookError, UsageError

FIRST_POLL_SECONDS: Final = 0.02
MAX_POLL_SECONDS: Final = 0.5
PAGE_SIZE: Final = 500


# ---- catalog ----------------------------------------------------------------------------------------


def register(client: Client, files: Sequence[str], as_json: bool) -> None:
    """``noetl catalog register FILE...``: one line (or JSON object) per playbook; a file equal to
    its path's latest version is reported ``unchanged`` and makes no new version."""
    for file in files:
        entry, unchanged = register_if_changed(client, file)
        if as_json:
            emit({**{k: v for k, v in entry.items() if k != "content"}, "unchanged": unchanged})
        else:
            said = "unchanged:" if unchanged else "registered"
            click.echo(
                f"{said} {entry['path']} version {entry['version']} (catalog_id {entry['catalog_id']})"
            )


def register_if_changed(client: Client, file: str) -> tuple[JSONObject, bool]:
    """The catalog entry holding exactly ``file``'s content, and whether it was there already (the
    latest version of its path): only a changed file becomes a new version."""
    from noetl.runtime import loader

    text = read_text(file)
    path = loader.parse(text, source=file).path
    try:
        latest = client.catalog_entry(path=path)
    except NotFound:
        latest = None
    if latest is not None and latest.get("content") == text:
        return latest, True
    return register_file(client, file), False


def register_file(client: Client, file: str) -> JSONObject:
    """Register the playbook in ``file``; an invalid one raises PlaybookError naming the file."""
    text = read_text(file)
    try:
        return client.register(text)
    except PlaybookError as exc:
        raise located(exc, file) from None


def catalog_list(client: Client, path: str | None, as_json: bool) -> None:
    """``noetl catalog list``: every version of every playbook (content left out)."""
    entries = [{k: v for k, v in e.items() if k != "content"} for e in client.catalog(path=path)]
    if as_json:
        emit(entries)
        return
    rows = [
        [e["path"], str(e["version"]), str(e["catalog_id"]), str(e.get("created_at") or "")] for e in entries
    ]
    table(["PATH", "VERSION", "CATALOG_ID", "CREATED_AT"], rows)


def catalog_get(client: Client, path: str, version: int | None, as_json: bool) -> None:
    """``noetl catalog get PATH``: the playbook's YAML (the latest version unless ``version``)."""
    entry = client.catalog_entry(path=path, version=version)
    if as_json:
        emit(entry)
    else:
        content = str(entry.get("content") or "")
        click.echo(content, nl=not content.endswith("\n"))


# ---- executions -------------------------------------------------------------------------------------


def start(
    client: Client,
    path: str,
    version: int | None,
    payload: Mapping[str, Any],
    as_json: bool,
    *,
    priority: int | None = None,
) -> None:
    """``noetl exec PATH``: start an execution of a catalog entry; prints its id."""
    started = client.execute(path=path, version=version, payload=payload, priority=priority)
    if as_json:
        emit(started)
    else:
        click.echo(started["execution_id"])


def status(client: Client, execution_id: str, as_json: bool) -> None:
    """``noetl status ID``: status, current step, progress, result or error."""
    found = client.status(execution_id)
    if as_json:
        emit(found)
        return
    progress = found.get("progress") or {}
    click.echo(f"execution {found['execution_id']} {found['status']}")
    click.echo(f"  current step: {found.get('current_step') or '-'}")
    click.echo(f"  steps: {step_counts(progress)}")
    for stalled in found.get("stalled") or ():
        for reason in stalled.get("reasons") or ():
            waited = stalled.get("waiting_seconds")
            click.echo(f"  waiting: step '{stalled.get('step')}' ({waited} s): {reason}")
    if found.get("error"):
        click.echo(f"  error: {json.dumps(found['error'], default=str)}")
    if found.get("result") is not None:
        click.echo(f"  result: {json.dumps(found['result'], default=str)}")


def step_counts(progress: Mapping[str, Any]) -> str:
    """``4 completed, 0 running, 0 failed, 1 skipped, of 5`` (cancelled too, when there are some)."""
    names = ("completed", "running", "failed", "skipped")
    counts = [f"{progress.get(f'{key}_steps', 0)} {key}" for key in names]
    if progress.get("cancelled_steps"):
        counts.append(f"{progress['cancelled_steps']} cancelled")
    return f"{', '.join(counts)}, of {progress.get('total_steps', 0)}"


def show_events(
    client: Client, execution_id: str, *, follow: bool, since: int, event_type: str | None, as_json: bool
) -> None:
    """``noetl events ID``: the log so far, or with ``follow`` until the execution ends."""
    stream = (
        follow_events(client, execution_id, since) if follow else read_events(client, execution_id, since)
    )
    for event in stream:
        if event_type is not None and event.get("event_type") != event_type:
            continue
        click.echo(json.dumps(event, default=str) if as_json else event_line(event))


def cancel(client: Client, execution_id: str, reason: str | None, cascade: bool, as_json: bool) -> None:
    """``noetl cancel ID``: request cancellation (of the children too, unless ``cascade`` is off)."""
    answer = client.cancel(execution_id, reason=reason, cascade=cascade)
    if as_json:
        emit(answer)
        return
    cancelled = [str(i) for i in answer.get("cancelled") or []]
    children = [i for i in cancelled if i != str(execution_id)]
    extra = f" and {len(children)} child execution(s): {', '.join(children)}" if children else ""
    click.echo(f"cancel requested for execution {answer['execution_id']}{extra}; status {answer['status']}")


def list_executions(client: Client, status: str | None, path: str | None, limit: int, as_json: bool) -> None:
    """``noetl executions list``: newest executions with their status."""
    found = client.executions(status=status.upper() if status else None, path=path, limit=limit)
    if as_json:
        emit(found)
        return
    rows = [
        [
            str(e["execution_id"]),
            str(e["status"]),
            str(e.get("path") or ""),
            str(e.get("created_at") or ""),
            str(e.get("completed_at") or ""),
        ]
        for e in found
    ]
    table(["EXECUTION_ID", "STATUS", "PATH", "CREATED_AT", "COMPLETED_AT"], rows)


def request_cancel(client: Client, execution_id: str, reason: str) -> bool:
    """Ask for cancellation; False when the execution had already finished."""
    try:
        client.cancel(execution_id, reason=reason)
    except Conflict:
        return False
    return True


# ---- events -----------------------------------------------------------------------------------------


def read_events(client: Client, execution_id: str, since: int = 0) -> Iterator[JSONObject]:
    """Every event after ``since`` that the log holds now, page by page."""
    while True:
        page = client.events(execution_id, since=since, limit=PAGE_SIZE)
        yield from page["events"]
        since = int(page["next_since_event_id"])
        if not page.get("has_more"):
            return


def follow_events(
    client: Client,
    execution_id: str,
    since: int = 0,
    *,
    on_idle: Callable[[], None] | None = None,
    idle_seconds: float = 3.0,
) -> Iterator[JSONObject]:
    """Events as they are appended, up to and including the execution's terminal event.

    Polls with a short backoff (20 ms growing to 500 ms while nothing new arrives); ``on_idle`` is
    called after every ``idle_seconds`` without a new event (e.g. to say why the execution waits)."""
    delay = FIRST_POLL_SECONDS
    quiet_since = time.monotonic()
    while True:
        page = client.events(execution_id, since=since, limit=PAGE_SIZE)
        for event in page["events"]:
            yield event
            if event.get("event_type") in ev.TERMINAL_EVENTS:
                return
        since = int(page["next_since_event_id"])
        if page["events"]:
            delay = FIRST_POLL_SECONDS
            quiet_since = time.monotonic()
            continue
        if on_idle is not None and time.monotonic() - quiet_since >= idle_seconds:
            on_idle()
            quiet_since = time.monotonic()
        time.sleep(delay)
        delay = min(delay * 1.5, MAX_POLL_SECONDS)


def event_line(event: Mapping[str, Any]) -> str:
    """``  12 10:41:07.123 command.completed   step  [command_id]  detail`` for people."""
    at = datetime.fromtimestamp(float(event.get("timestamp") or 0), tz=UTC).strftime("%H:%M:%S.%f")[:-3]
    parts = [
        f"{event.get('event_id', 0):>5}",
        at,
        f"{event.get('event_type', ''):<26}",
        str(event.get("step") or ""),
    ]
    if event.get("command_id"):
        parts.append(f"[{event['command_id']}]")
    detail = event_detail(event.get("data") or {})
    if detail:
        parts.append(detail)
    return " ".join(parts).rstrip()


def event_detail(data: Mapping[str, Any]) -> str:
    error = data.get("error")
    if isinstance(error, Mapping):
        return f"{error.get('kind', 'error')}: {error.get('message', '')}"
    if data.get("status") is not None:
        return str(data["status"])
    return ""


# ---- credentials ------------------------------------------------------------------------------------


def import_credentials(client: Client, file: str, as_json: bool) -> None:
    """``noetl credential import FILE``: store every credential of a ``--credentials`` file."""
    entries = credentials_file(file)
    saved = [
        client.put_credential(name, str(entry["type"]), entry["data"]) for name, entry in entries.items()
    ]
    if as_json:
        emit(saved)
        return
    names = ", ".join(entries) or "none"
    click.echo(f"imported {len(entries)} credential(s) from {file}: {names}")


def credentials_file(file: str) -> dict[str, dict[str, Any]]:
    """``{name: {type, data}}`` read (and checked) exactly as ``noetl run --credentials`` reads it."""
    import asyncio

    from noetl.runtime.credentials import FileCredentials

    store = FileCredentials(file)

    async def everything() -> dict[str, dict[str, Any]]:
        return {name: dict(await store.get(name)) for name in store.names()}

    return asyncio.run(everything())


def list_credentials(client: Client, kind: str | None, query: str | None, as_json: bool) -> None:
    """``noetl credential list``: names, types and descriptions; never secret data."""
    found = client.credentials(kind=kind, query=query)
    if as_json:
        emit(found)
        return
    rows = [
        [
            str(c["name"]),
            str(c.get("type") or ""),
            ", ".join(c.get("allow_paths") or ["*"]),
            str(c.get("description") or ""),
        ]
        for c in found
    ]
    table(["NAME", "TYPE", "SCOPE", "DESCRIPTION"], rows)


def get_credential(client: Client, name: str, include_data: bool) -> None:
    """``noetl credential get NAME``: the record as JSON, with its data only when asked for."""
    emit(client.credential(name, include_data=include_data), indent=2)


def delete_credential(client: Client, name: str, as_json: bool) -> None:
    answer = client.delete_credential(name)
    if as_json:
        emit(answer)
    else:
        click.echo(f"deleted credential {name}")


# ---- workers ----------------------------------------------------------------------------------------


def list_workers(client: Client, as_json: bool) -> None:
    """``noetl worker list``: registered workers, their pools and when they last beat."""
    found = client.workers()
    if as_json:
        emit(found)
        return
    rows = [
        [
            str(w["worker_id"]),
            ",".join(w.get("pools") or []),
            str(w.get("status") or ""),
            str(w.get("capacity") or ""),
            f"{float(w.get('heartbeat_age') or 0):.1f}s ago",
        ]
        for w in found
    ]
    table(["WORKER_ID", "POOLS", "STATUS", "CAPACITY", "HEARTBEAT"], rows)


# ---- output -----------------------------------------------------------------------------------------


def emit(value: object, indent: int | None = None) -> None:
    click.echo(json.dumps(value, default=str, indent=indent))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Left-aligned columns as wide as their widest cell; a lone header when there are no rows."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    for row in [list(headers), *rows]:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def read_text(file: str) -> str:
    try:
        with open(file, encoding="utf-8") as handle:
            return handle.read()
    except IsADirectoryError:
        raise UsageError(f"'{file}' is a directory, not a playbook file (give its YAML files)") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"cannot read {file}: {reason}") from None


def located(exc: PlaybookError, file: str) -> PlaybookError:
    """The server's PlaybookError with the user's file name in place of ``<playbook>``."""
    where = exc.location or Location()
    return PlaybookError(
        exc.message, location=Location(file, where.line, where.column), step=exc.step, field=exc.field
    )
