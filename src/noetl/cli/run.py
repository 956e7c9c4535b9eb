"""``noetl run``: one execution in this process, with the contract of DECISIONS 25.

``--json`` prints exactly one outcome object on stdout. Without it, one line per finished step
(status, duration), then the final status and result; with a terminal attached, loops show live
progress (items done / total). Ctrl-C cancels cleanly: status CANCELLED, exit 1.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

from noetl.engine import events as ev
from noetl.errors import NoetlError, UsageError

ERROR_LINES = 5
ERROR_CHARS = 600


def parse_value(text: str) -> Any:
    """A ``--set`` value: JSON, else a YAML scalar (numbers, booleans, null), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    return text


def build_payload(
    sets: tuple[str, ...],
    payload: str | None,
    workload: Mapping[str, Any] | None = None,
    *,
    strict: bool = False,
) -> dict[str, Any]:
    """DECISIONS 23: ``--payload`` keys, then each ``--set``, replace workload keys at the top level.

    ``--set a.b=1`` sets ``b`` inside ``a`` (the rest of the workload's ``a`` is kept) unless the
    workload declares the key ``a.b`` itself. Given the playbook's ``workload``, a ``--set`` key it
    does not declare is a warning on stderr (a typo would otherwise run with the default), and an
    error with ``strict``.
    """
    out: dict[str, Any] = {}
    if payload:
        try:
            loaded = json.loads(payload)
        except ValueError as exc:
            raise UsageError(f"--payload is not valid JSON: {exc}", field="--payload") from None
        if not isinstance(loaded, dict):
            raise UsageError("--payload must be a JSON object", field="--payload")
        out.update(loaded)
    for item in sets:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise UsageError(f"--set expects KEY=VALUE, got {item!r}", field="--set")
        path = [key] if workload is not None and key in workload else key.split(".")
        if workload is not None and path[0] not in workload:
            _undeclared(path[0], workload, strict)
        _set_path(out, path, parse_value(value), workload or {}, item)
    return out


def _set_path(
    out: dict[str, Any], path: list[str], value: Any, workload: Mapping[str, Any], item: str
) -> None:
    """Set ``out[a][b]...`` to ``value``; a map on the way starts as the workload's (copied)."""
    import copy

    target, defaults = out, workload
    for depth, name in enumerate(path[:-1]):
        if not name:
            raise UsageError(f"--set {item!r}: empty key segment", field="--set")
        if name not in target:
            target[name] = copy.deepcopy(defaults.get(name, {})) if isinstance(defaults, Mapping) else {}
        if not isinstance(target[name], dict):
            where = ".".join(path[: depth + 1])
            raise UsageError(
                f"--set {item!r}: '{where}' is {type(target[name]).__name__}, not a map", field="--set"
            )
        nested = defaults.get(name) if isinstance(defaults, Mapping) else None
        target, defaults = target[name], nested if isinstance(nested, Mapping) else {}
    target[path[-1]] = value


def _undeclared(key: str, workload: Mapping[str, Any], strict: bool) -> None:
    import difflib

    close = difflib.get_close_matches(key, [str(k) for k in workload], n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    declared = ", ".join(str(k) for k in workload) or "none"
    message = f"the workload declares no key '{key}' (it declares: {declared}){hint}"
    if strict:
        raise UsageError(message + " (--strict)", field="--set")
    print(f"warning: --set {key}: {message}", file=sys.stderr)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


def inline_results() -> int:
    """``NOETL_INLINE_RESULTS``: loops with more items keep their results in the log (DECISIONS 19)."""
    from noetl.engine.decide import DEFAULT_LIMITS

    raw = os.environ.get("NOETL_INLINE_RESULTS", "").strip()
    if not raw:
        return DEFAULT_LIMITS.inline_results
    if not raw.isdigit():
        message = f"NOETL_INLINE_RESULTS must be a whole number, got {raw!r}"
        raise UsageError(message, field="NOETL_INLINE_RESULTS")
    return int(raw)


def outcome(execution: Any) -> dict[str, Any]:
    """The outcome object of DECISIONS 25 (results of spilled loops hydrated from the events)."""
    from noetl.runtime import results

    state = execution.state
    completed = state.completed_at
    error = state.error
    if error is not None:
        error = {"step": error.get("step"), "kind": error.get("kind"), "message": error.get("message")}
    found = {
        "final_result": state.final_result,
        "step_results": {
            name: state.results[name] for name in dict.fromkeys(state.executed) if name in state.results
        },
    }
    found = results.hydrate_from_events(found, list(execution.events), state.execution_id)
    return {
        "execution_id": state.execution_id,
        "status": state.status,
        "playbook_path": state.playbook_path,
        "started_at": iso(state.started_at),
        "completed_at": iso(completed),
        "duration_seconds": round((completed or state.started_at) - state.started_at, 6),
        "executed_steps": list(state.executed),
        "step_results": found["step_results"],
        "final_result": found["final_result"],
        "variables": state.variables,
        "error": error,
    }


class Reporter:
    """Writes events to ``--events`` and, without ``--json``, prints progress for people."""

    def __init__(self, events_out: IO[str] | None, human: bool) -> None:
        self.events_out = events_out
        self.human = human
        self.root: str | None = None
        self.entered: dict[str, float] = {}
        self.progress: Any = None
        self.tasks: dict[str, Any] = {}

    def __call__(self, execution_id: str, event: ev.Event) -> None:
        if self.events_out is not None:
            self.events_out.write(json.dumps(event.to_dict(execution_id), default=str) + "\n")
        if self.root is None:
            self.root = execution_id
        if self.human and execution_id == self.root:
            self.show(event)

    def show(self, event: ev.Event) -> None:
        step = event.step or ""
        if event.name == ev.STEP_ENTER:
            self.entered[step] = event.at
            loop = event.data.get("loop")
            if loop is not None and sys.stderr.isatty():
                self.start_progress(step, len(loop["items"]))
        elif event.name in (ev.COMMAND_COMPLETED, ev.COMMAND_FAILED) and event.data.get("index") is None:
            self.line(
                step, "COMPLETED" if event.name == ev.COMMAND_COMPLETED else "FAILED", event.at, event.data
            )
        elif event.name in (ev.COMMAND_COMPLETED, ev.COMMAND_FAILED) and step in self.tasks:
            self.progress.advance(self.tasks[step])
        elif event.name == ev.LOOP_DONE:
            self.stop_progress(step)
            stats = (event.data.get("result") or {}).get("stats", {})
            extra = f" ({stats.get('succeeded', 0)}/{stats.get('total', 0)} items ok)"
            self.line(step, str(event.data.get("status")), event.at, event.data, extra)
        elif event.name == ev.STEP_FAILED:
            self.line(step, "FAILED", event.at, event.data)
        elif event.name == ev.STEP_SKIPPED:
            print(f"  - {step:<28} SKIPPED", file=sys.stderr)
        elif event.name == ev.TEMPLATE_WARNING:
            print(f"  ! {step}: {event.data.get('message')}", file=sys.stderr)

    def line(self, step: str, status: str, at: float, data: Any, extra: str = "") -> None:
        ms = (at - self.entered.get(step, at)) * 1000
        mark = "✓" if status == "COMPLETED" else "✗"
        print(f"  {mark} {step:<28} {status:<10} {ms:9.1f} ms{extra}", file=sys.stderr)
        error = data.get("error") if isinstance(data, dict) else None
        if status == "FAILED" and error:
            print(
                f"      {error.get('kind', 'error')}: {concise(str(error.get('message', '')))}",
                file=sys.stderr,
            )

    def start_progress(self, step: str, total: int) -> None:
        from rich.progress import Progress

        if self.progress is None:
            self.progress = Progress(transient=True)
            self.progress.start()
        self.tasks[step] = self.progress.add_task(step, total=total)

    def stop_progress(self, step: str) -> None:
        if step in self.tasks and self.progress is not None:
            self.progress.remove_task(self.tasks.pop(step))
            if not self.tasks:
                self.progress.stop()
                self.progress = None


def main(
    playbook_file: str,
    *,
    sets: tuple[str, ...],
    payload: str | None,
    credentials: str | None,
    catalogs: tuple[str, ...],
    events_file: str | None,
    as_json: bool,
    strict: bool,
    max_parallel: int,
    python_workers: int | None,
    python_memory_mb: int | None = None,
    file_roots: tuple[str, ...] = (),
    undefined: str = "strict",
) -> int:
    """Run one playbook; return the exit code (0 COMPLETED, 1 FAILED/CANCELLED).

    ``file_roots``: the directories the ``file`` tool may touch (default: the working directory).
    """
    from pathlib import Path

    from noetl.runtime import loader
    from noetl.runtime.credentials import FileCredentials, NoCredentials
    from noetl.runtime.runner import TEMPLATE_UNDEFINED_KEY

    pool = _early_python_pool(playbook_file, python_workers, python_memory_mb)
    try:
        playbook = loader.load(playbook_file, strict=strict)
    except BaseException:
        if pool is not None:
            pool.kill_now()
        raise
    data = build_payload(sets, payload, playbook.workload, strict=strict)
    creds = FileCredentials(credentials) if credentials else NoCredentials()
    catalog = loader.Catalog([Path(playbook_file).resolve().parent], trees=catalogs)
    events_out = _open_events(events_file)
    reporter = Reporter(events_out, human=not as_json)
    try:
        execution = asyncio.run(
            _execute(
                playbook,
                data,
                creds,
                catalog,
                reporter,
                max_parallel,
                (python_workers, python_memory_mb),
                pool,
                {**tool_settings(file_roots), TEMPLATE_UNDEFINED_KEY: undefined},
            )
        )
    finally:
        if reporter.progress is not None:
            reporter.progress.stop()
        if events_out is not None:
            events_out.close()
    result = outcome(execution)
    if as_json:
        sys.stdout.write(json.dumps(result, default=str) + "\n")
    else:
        _print_summary(result)
    return 0 if result["status"] == "COMPLETED" else 1


def _early_python_pool(path: str, size: int | None, memory_mb: int | None = None) -> Any:
    """Start the python tool's children before the playbook is even parsed, when it looks like
    it will need them: their interpreter start-up then overlaps ours."""
    import re

    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError):
        return None  # the loader reports it properly
    if not re.search(r"\bpython\b", text):
        return None
    from noetl.tools.pychild import DEFAULT_MEMORY_MB
    from noetl.tools.pypool import PythonPool

    pool = PythonPool(size=size, memory_mb=memory_mb or DEFAULT_MEMORY_MB)
    pool.start()
    return pool


def tool_settings(file_roots: tuple[str, ...]) -> dict[str, Any]:
    """What the integration tools read from ``Services.extras``: the file roots, made absolute."""
    import os

    from noetl.tools.file_tool import ROOTS_KEY

    roots = [part for root in file_roots for part in root.split(os.pathsep) if part] or [os.getcwd()]
    return {ROOTS_KEY: tuple(os.path.abspath(root) for root in roots)}


def _open_events(path: str | None) -> IO[str] | None:
    if path is None:
        return None
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write events file {path}: {exc.strerror}", field="--events") from None


async def _execute(
    playbook: Any,
    payload: dict[str, Any],
    creds: Any,
    catalog: Any,
    reporter: Reporter,
    max_parallel: int,
    python: tuple[int | None, int | None],
    pool: Any,
    extras: dict[str, Any] | None = None,
) -> Any:
    from noetl.engine.decide import Limits
    from noetl.runtime.local import LocalRuntime

    async with LocalRuntime(
        credentials=creds,
        catalog=catalog,
        sink=reporter,
        limits=Limits(max_parallel=max_parallel, inline_results=inline_results()),
        python_pool_size=python[0],
        python_memory_mb=python[1],
        python_pool=pool,
    ) as runtime:
        runtime.services.extras.update(extras or {})
        runtime.warm_up(playbook)
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGINT, runtime.cancel)
            loop.add_signal_handler(signal.SIGTERM, runtime.cancel)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signals here
            pass
        return await runtime.execute(playbook, payload)


def _print_summary(result: dict[str, Any]) -> None:
    """The end of a run for people: a completed run's result on stdout; a failed or cancelled run's
    error, short, as the last thing on stderr (its partial result is in ``--json``, not dumped here)."""
    status = result["status"]
    print(
        f"execution {result['execution_id']} {status} in {result['duration_seconds']:.3f} s "
        f"({len(result['executed_steps'])} steps)",
        file=sys.stderr,
    )
    if status == "COMPLETED":
        text = json.dumps(result["final_result"], indent=2, default=str)
        print(f"result: {text}")
    if result["error"]:
        print(error_line(result["error"]), file=sys.stderr)


def error_line(error: Mapping[str, Any]) -> str:
    """``error: step 'x': kind: message``, the message cut to a few lines (the whole in --json)."""
    where = f"step '{error['step']}': " if error.get("step") else ""
    return f"error: {where}{error.get('kind') or 'error'}: {concise(str(error.get('message') or ''))}"


def concise(message: str, lines: int = ERROR_LINES, chars: int = ERROR_CHARS) -> str:
    """At most ``lines`` lines and ``chars`` characters of ``message``, saying what was left out."""
    kept = [line for line in message.splitlines() if line.strip()][:lines]
    text = "\n".join(kept)
    if len(text) > chars:
        text = text[:chars]
    if len(text) < len(message.strip()) and text.strip() != message.strip():
        text += f" ... [{len(message) - len(text)} more characters; the whole error is in --json]"
    return text


__all__ = ["NoetlError", "build_payload", "main", "outcome", "parse_value"]
