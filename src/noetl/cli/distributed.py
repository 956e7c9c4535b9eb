"""``noetl run --runtime distributed``: one execution through a NoETL server and its workers.

The contract is the local one (DECISIONS 25): the same outcome object, the same ``--events`` file,
the same exit codes. The steps:

1. load and validate the playbook here (an invalid one exits 2 naming the file and line, before
   the server is contacted);
2. with ``--credentials FILE``, store those credentials on the server (create or replace);
3. publish the playbook and the sub-playbooks it calls by path - files of its own directory and of
   the ``--catalog`` directories whose ``metadata.path``/``name`` a ``kind: playbook`` task names,
   recursively (all of them when such a path is a template). A file whose content equals the
   latest catalog version of its path is not registered again;
4. execute that catalog entry with the payload and follow its events until the terminal one;
5. fold the events with the engine's ``fold`` and print :func:`noetl.cli.run.outcome` of the state.

Ctrl-C (or SIGTERM) asks the server to cancel the execution and keeps following it to its
``playbook.cancelled`` event; a second Ctrl-C stops waiting at once.
"""

from __future__ import annotations

import heapq
import json
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

from noetl.cli import remote
from noetl.cli.client import ApiError, Client, JSONObject, ServerUnreachable
from noetl.cli.run import Reporter, build_payload, outcome
from noetl.dsl.model import Playbook, Task
from noetl.engine import events as ev
from noetl.engine.state import State, fold
from noetl.errors import NoetlError, UsageError

CANCEL_REASON = "cancelled by the user (Ctrl-C)"
RECONNECT_SECONDS = 60.0
"""How long a run keeps trying to reach a server that went away before it gives up."""


@dataclass(frozen=True, slots=True)
class Finished:
    """What :func:`noetl.cli.run.outcome` reads: the finished execution's events and their fold."""

    state: State
    events: list[ev.Event]


def main(
    playbook_file: str,
    *,
    server_url: str,
    sets: tuple[str, ...],
    payload: str | None,
    credentials: str | None,
    catalogs: tuple[str, ...],
    events_file: str | None,
    as_json: bool,
    strict: bool,
) -> int:
    """Run one playbook on the server; return the exit code (0 COMPLETED, 1 FAILED/CANCELLED)."""
    from noetl.runtime import loader

    playbook = loader.load(playbook_file, strict=strict)
    data = build_payload(sets, payload, playbook.workload, strict=strict)
    creds = remote.credentials_file(credentials) if credentials else {}
    directories = [Path(playbook_file).resolve().parent, *(Path(d) for d in catalogs)]
    reporter = Reporter(None, human=not as_json)
    events_out = open_events(events_file)
    try:
        with Client(server_url) as client:
            for name, entry in creds.items():
                client.put_credential(name, str(entry["type"]), entry["data"])
            catalog_id = str(publish(client, playbook_file, playbook, directories)["catalog_id"])
            warn_without_workers(client)
            execution_id = str(client.execute(catalog_id=catalog_id, payload=data)["execution_id"])
            log = wait(client, execution_id, lambda event: reporter(execution_id, ev.Event.from_dict(event)))
            if events_out is not None:
                write_events(events_out, client, execution_id, log)
    finally:
        if reporter.progress is not None:
            reporter.progress.stop()
        if events_out is not None:
            events_out.close()
    parsed = [ev.Event.from_dict(event) for event in log]
    result = outcome(Finished(fold(parsed), parsed))
    if as_json:
        sys.stdout.write(json.dumps(result, default=str) + "\n")
    else:
        from noetl.cli.run import _print_summary

        _print_summary(result)
    return 0 if result["status"] == "COMPLETED" else 1


# ---- publishing the playbook and its sub-playbooks --------------------------------------------------


def publish(client: Client, file: str, playbook: Playbook, directories: Iterable[Path]) -> JSONObject:
    """Make the catalog's latest versions match the playbook in ``file`` and its sub-playbooks;
    returns the playbook's entry."""
    for child in sub_playbook_files(file, playbook, directories):
        ensure_registered(client, str(child))
    return ensure_registered(client, file)


def ensure_registered(client: Client, file: str) -> JSONObject:
    """The catalog entry holding exactly ``file``'s content: the latest version if equal, else a new one."""
    return remote.register_if_changed(client, file)[0]


def sub_playbook_files(file: str, playbook: Playbook, directories: Iterable[Path]) -> list[Path]:
    """Files in ``directories`` holding the playbooks ``playbook`` calls by path, recursively."""
    from noetl.runtime import loader

    index = PlaybookIndex(directories)
    own = Path(file).resolve()
    found: list[Path] = []
    todo = [playbook]
    while todo:
        paths, dynamic = child_paths(todo.pop())
        files = index.all() if dynamic else [f for f in (index.find(p) for p in paths) if f is not None]
        for child in files:
            if child != own and child not in found:
                found.append(child)
                todo.append(loader.load(child))
    return found


def child_paths(playbook: Playbook) -> tuple[set[str], bool]:
    """The literal paths ``kind: playbook`` tasks name, and whether any names one by a template."""
    paths: set[str] = set()
    dynamic = False
    for task in tasks(playbook):
        if task.kind != "playbook" or task.config.get("catalog_id") not in (None, ""):
            continue
        path = task.config.get("path")
        if isinstance(path, str) and "{{" not in path and "{%" not in path:
            paths.add(path)
        else:
            dynamic = True
    return paths, dynamic


def tasks(playbook: Playbook) -> Iterator[Task]:
    for step in playbook.workflow:
        yield from step.tool
    yield from playbook.workbook.values()


class PlaybookIndex:
    """The playbooks of some directories by ``metadata.path`` and ``metadata.name`` (first one wins),
    as ``noetl run`` finds sub-playbooks locally; scanned on first use."""

    def __init__(self, directories: Iterable[Path]) -> None:
        self.directories = [Path(d) for d in directories]
        self._files: dict[str, Path] | None = None

    def find(self, path: str) -> Path | None:
        files = self._scan()
        return files.get(path) or files.get(path.strip("/"))

    def all(self) -> list[Path]:
        return list(dict.fromkeys(self._scan().values()))

    def _scan(self) -> dict[str, Path]:
        if self._files is not None:
            return self._files
        from noetl.runtime import loader

        files: dict[str, Path] = {}
        # the first directory is the playbook's own (searched flat); --catalog ones with subdirectories
        for file in loader.yaml_files(self.directories[:1], self.directories[1:]):
            try:
                playbook = loader.load(file)
            except NoetlError:
                continue  # not a playbook, or a broken one: it cannot be the one asked for
            files.setdefault(playbook.path, file.resolve())
            files.setdefault(playbook.name, file.resolve())
        self._files = files
        return files


# ---- following the execution ------------------------------------------------------------------------


def warn_without_workers(client: Client) -> None:
    if not client.workers():
        print(
            "warning: no worker is registered with the server; the execution waits until one starts "
            "(`noetl worker start`)",
            file=sys.stderr,
        )


def wait(client: Client, execution_id: str, on_event: Callable[[JSONObject], None]) -> list[JSONObject]:
    """The execution's events up to its terminal one.

    Ctrl-C/SIGTERM cancels the execution and keeps waiting; losing the server (a restart) is
    retried for up to ``RECONNECT_SECONDS``, since the execution goes on without us."""
    log: list[JSONObject] = []
    cancelling = False
    outage = Outage()
    stalls = StallWarnings(client, execution_id)
    with _sigterm_interrupts():
        while True:
            try:
                since = int(log[-1]["event_id"]) if log else 0
                for event in remote.follow_events(client, execution_id, since, on_idle=stalls.check):
                    log.append(event)
                    outage.over()
                    on_event(event)
                return log
            except KeyboardInterrupt:
                if cancelling:
                    raise
                cancelling = True
                print(
                    f"cancelling execution {execution_id} (Ctrl-C again to stop waiting)",
                    file=sys.stderr,
                    flush=True,
                )
                remote.request_cancel(client, execution_id, CANCEL_REASON)
            except (ServerUnreachable, ApiError) as exc:
                outage.wait(exc, execution_id)


class StallWarnings:
    """While an execution is quiet: ask the server whether a step waits for a worker that no live
    worker can be (no worker serves its pool, or none has its resources), and say so once."""

    def __init__(self, client: Client, execution_id: str) -> None:
        self.client = client
        self.execution_id = execution_id
        self.said: set[tuple[str, str]] = set()

    def check(self) -> None:
        try:
            found = self.client.status(self.execution_id).get("stalled") or []
        except NoetlError:
            return  # the follow loop reports a server that went away
        for item in found:
            for reason in item.get("reasons") or ():
                key = (str(item.get("step")), str(reason))
                if key not in self.said:
                    self.said.add(key)
                    print(f"warning: step '{key[0]}' is waiting: {reason}", file=sys.stderr, flush=True)


class Outage:
    """Waiting out a server that went away (or answers 503) while an execution runs."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.delay = 0.1

    def wait(self, exc: NoetlError, execution_id: str) -> None:
        """Sleep before the next try; re-raise ``exc`` when it is not transient or lasted too long."""
        if isinstance(exc, ApiError) and exc.status != 503:
            raise exc
        now = time.monotonic()
        if self.since is None:
            self.since = now
            print(f"lost the server ({exc}); still waiting for execution {execution_id}", file=sys.stderr)
        if now - self.since > RECONNECT_SECONDS:
            raise exc
        time.sleep(self.delay)
        self.delay = min(self.delay * 2, 2.0)

    def over(self) -> None:
        self.since, self.delay = None, 0.1


class _sigterm_interrupts:
    """While active, SIGTERM raises KeyboardInterrupt, so it cancels the execution like Ctrl-C."""

    def __enter__(self) -> None:
        try:
            self.previous: Any = signal.signal(signal.SIGTERM, _interrupt)
        except ValueError:  # not the main thread: leave signals alone
            self.previous = None

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


# ---- the event log ----------------------------------------------------------------------------------


def write_events(out: IO[str], client: Client, execution_id: str, log: list[JSONObject]) -> None:
    """``--events FILE``: the execution's events and its descendants', merged by time, as JSON lines.

    Each execution's own order (its event ids) is kept; only the interleaving follows the clock."""
    logs = [log, *(list(remote.read_events(client, child)) for child in descendants(client, execution_id))]
    for event in heapq.merge(*logs, key=_timestamp):
        out.write(json.dumps(event, default=str) + "\n")


def descendants(client: Client, execution_id: str) -> list[str]:
    """Child executions, their children, and so on (breadth first)."""
    found: list[str] = []
    todo = [execution_id]
    while todo:
        parent = todo.pop(0)
        children = [str(e["execution_id"]) for e in client.executions(parent=parent, limit=1000)]
        found.extend(children)
        todo.extend(children)
    return found


def _timestamp(event: Mapping[str, Any]) -> float:
    return float(event.get("timestamp") or 0.0)


def open_events(path: str | None) -> IO[str] | None:
    """The ``--events`` file, opened before anything runs so a bad path fails early."""
    if path is None:
        return None
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write events file {path}: {exc.strerror}", field="--events") from None
