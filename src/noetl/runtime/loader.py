"""Loading playbooks for running: parse, then check every task against its tool.

The parser (``noetl.dsl``) knows the language but not the tools; this module adds the tools'
own field checks, so a wrong field fails at load time with the file, line and step. It also
finds sub-playbooks for the local runtime (DECISIONS 20): by ``metadata.path`` or
``metadata.name`` among the playbooks in the main playbook's directory and in ``--catalog`` dirs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from noetl.dsl import parser
from noetl.dsl.model import Playbook
from noetl.errors import NoetlError, PlaybookError, ToolConfigError
from noetl.runtime import inputs
from noetl.tools import registry
from noetl.tools.base import check_config


def load(path: str | os.PathLike[str], *, strict: bool = False) -> Playbook:
    """Parse the playbook at ``path`` and check its tasks; PlaybookError on any problem."""
    playbook = parser.load(path, strict=strict, kinds=registry.KINDS)
    check_tools(playbook)
    inputs.check_explicit_schema(playbook)
    return playbook


def parse(text: str, *, source: str | None = None, strict: bool = False) -> Playbook:
    playbook = parser.parse(text, source=source, strict=strict, kinds=registry.KINDS)
    check_tools(playbook)
    inputs.check_explicit_schema(playbook)
    return playbook


def check_tools(playbook: Playbook) -> None:
    """Each task's fields must fit its tool kind (ToolConfigError becomes a PlaybookError)."""
    for step in playbook.workflow:
        for task in step.tool:
            try:
                tool = registry.get(task.kind)
                check_config(tool, task.config, step=step.name, task=task.name)
                if hasattr(tool, "config_model"):
                    from noetl.tools import spec  # pydantic: only for tools that declare a model

                    spec.check_values(tool, task.config, step=step.name, task=task.name)
            except ToolConfigError as exc:
                where = task.field_locations.get(exc.field or "")
                raise PlaybookError(
                    exc.message,
                    location=where or task.location or step.location,
                    step=step.name,
                    field=exc.field,
                ) from None


def yaml_files(directories: Iterable[Path], trees: Iterable[Path] = ()) -> list[Path]:
    """The YAML files directly in ``directories`` and anywhere below ``trees`` (hidden directories and
    ``node_modules`` skipped), each once, in a stable order: directories first, then trees."""
    found: dict[Path, None] = {}
    for directory in directories:
        found.update(dict.fromkeys(sorted(directory.glob("*.y*ml"))))
    for tree in trees:
        for dirpath, dirnames, filenames in os.walk(tree):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "node_modules")
            found.update(
                dict.fromkeys(Path(dirpath, n) for n in sorted(filenames) if n.endswith((".yaml", ".yml")))
            )
    return list(found)


class Catalog:
    """Playbooks found in directories, keyed by ``metadata.path`` and ``metadata.name``."""

    def __init__(
        self, directories: Iterable[str | os.PathLike[str]], trees: Iterable[str | os.PathLike[str]] = ()
    ) -> None:
        self.directories = [Path(d) for d in directories]
        self.trees = [Path(d) for d in trees]
        self._index: dict[str, Path] | None = None

    def _scan(self) -> dict[str, Path]:
        index: dict[str, Path] = {}
        for file in yaml_files(self.directories, self.trees):
            try:
                playbook = parser.load(file, kinds=registry.KINDS)
            except NoetlError:
                continue  # not a playbook, or a broken one: it cannot be the one asked for
            index.setdefault(playbook.path, file)
            index.setdefault(playbook.name, file)
        return index

    def has(self, path: str) -> bool:
        """Whether a playbook in these directories has ``path`` as its path or name."""
        if self._index is None:
            self._index = self._scan()
        return path in self._index or path.strip("/") in self._index

    def find(self, path: str) -> Playbook:
        """The playbook registered under ``path``; PlaybookError listing what is known otherwise."""
        if self._index is None:
            self._index = self._scan()
        file = self._index.get(path) or self._index.get(path.strip("/"))
        if file is None:
            known = ", ".join(sorted(self._index)) or "(none)"
            dirs = ", ".join([*(str(d) for d in self.directories), *(f"{d} (and below)" for d in self.trees)])
            raise PlaybookError(f"sub-playbook '{path}' not found in {dirs}; known: {known}", field="path")
        return load(file)
