"""Checks ``noetl validate`` adds to loading: what the parser accepts but a run would trip on.

* A ``python`` task whose ``code`` does not compile: an error at the line of the code inside the
  YAML file (the code's own line, counted from where the block starts), with the step.
* A ``playbook`` task whose ``path`` cannot be found, when that can be known without a server: a
  path naming a file (``child.yaml``) that does not exist beside the playbook is an error; a
  catalog path (``lib/enrich``) is looked up among the playbooks in the playbook's directory and
  the ``--catalog`` directories - missing is an error when catalog directories were given, else a
  note (the path may be registered on a server).

Templated values (``{{ ... }}``) are left alone: they are known only at run time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from noetl.dsl.model import Playbook, Step, Task
from noetl.errors import Location, PlaybookError
from noetl.runtime.loader import Catalog

_FILE_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True, slots=True)
class Findings:
    """Errors (the playbook is invalid) and notes (worth knowing, not wrong)."""

    errors: tuple[PlaybookError, ...]
    notes: tuple[str, ...]


def lint(playbook: Playbook, file: str | Path, catalogs: Sequence[str | Path] = ()) -> Findings:
    """The findings of the checks above for ``playbook``, loaded from ``file``."""
    source = Path(file)
    lines = _lines(source)
    catalog = Catalog([source.resolve().parent, *catalogs])
    errors: list[PlaybookError] = []
    notes: list[str] = []
    for step, task in _tasks(playbook):
        if task.kind == "python":
            error = _python_syntax(step, task, lines)
            if error is not None:
                errors.append(error)
        elif task.kind == "playbook":
            problem = _sub_playbook(step, task, source, catalog, bool(catalogs))
            if isinstance(problem, PlaybookError):
                errors.append(problem)
            elif problem:
                notes.append(problem)
    return Findings(tuple(errors), tuple(notes))


def _tasks(playbook: Playbook) -> Iterator[tuple[Step, Task]]:
    for step in playbook.workflow:
        for task in step.tool:
            yield step, task


def _lines(file: Path) -> list[str]:
    try:
        return file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []


def _templated(value: object) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _python_syntax(step: Step, task: Task, lines: list[str]) -> PlaybookError | None:
    code = task.config.get("code")
    if not isinstance(code, str) or _templated(code):
        return None
    try:
        compile(code, f"<step {step.name}>", "exec", dont_inherit=True)
    except SyntaxError as exc:
        where = task.field_locations.get("code") or task.location or step.location
        line = _code_line(where, exc.lineno or 1, lines)
        detail = (exc.text or "").strip()
        return PlaybookError(
            f"python code does not compile: {exc.msg} (line {exc.lineno} of the code"
            + (f": {detail!r}" if detail else "")
            + ")",
            location=Location(where.file, line, None) if where else None,
            step=step.name,
            field="code",
        )
    except ValueError as exc:  # e.g. a NUL byte in the source
        return PlaybookError(f"python code does not compile: {exc}", step=step.name, field="code")
    return None


def _code_line(where: Location | None, code_line: int, lines: list[str]) -> int | None:
    """The file line of the code's ``code_line``: a block scalar (``code: |``) starts on the line
    after its key, a one-line value on the key's own line."""
    if where is None or where.line is None:
        return None
    key_line = lines[where.line - 1] if 0 < where.line <= len(lines) else ""
    after = key_line.split("code:", 1)[1].strip() if "code:" in key_line else ""
    block = after[:1] in ("|", ">")
    return where.line + code_line if block else where.line + code_line - 1


def _sub_playbook(
    step: Step, task: Task, source: Path, catalog: Catalog, catalogs_given: bool
) -> PlaybookError | str | None:
    path = task.config.get("path")
    if not isinstance(path, str) or not path or _templated(path):
        return None
    where = task.field_locations.get("path") or task.location or step.location
    if path.endswith(_FILE_SUFFIXES):
        if (source.resolve().parent / path).is_file():
            return None
        return PlaybookError(
            f"sub-playbook file '{path}' does not exist (looked in {source.resolve().parent})",
            location=where,
            step=step.name,
            field="path",
        )
    if catalog.has(path):
        return None
    dirs = ", ".join(str(d) for d in catalog.directories)
    if catalogs_given:
        return PlaybookError(
            f"sub-playbook '{path}' is not among the playbooks in {dirs}",
            location=where,
            step=step.name,
            field="path",
        )
    return (
        f"step '{step.name}': sub-playbook '{path}' is not among the playbooks in {dirs}; "
        "give --catalog DIR to check it (it may also be registered on the server)"
    )
