"""The docs stay in step with the examples, the tool kinds and the command line.

* every include marker in docs/*.md is followed by a code block equal to the file or region it
  names (``python docs/sync.py`` rewrites them);
* every yaml block in docs/language.md comes from an include marker, so no playbook code in the
  guide escapes the example tests;
* every file under examples/ is included somewhere in docs/language.md;
* every tool kind of ``noetl.dsl.model.TOOL_KINDS`` has a section in docs/language.md;
* every command of ``noetl`` and every one of its options and environment variables is in
  docs/cli.md.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import click
import pytest

from noetl.cli.main import cli
from noetl.dsl.model import TOOL_KINDS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
LANGUAGE = DOCS / "language.md"
CLI_DOC = DOCS / "cli.md"


def load_sync() -> ModuleType:
    """docs/sync.py, the script that rewrites included blocks (it is not part of the package)."""
    spec = importlib.util.spec_from_file_location("docs_sync", DOCS / "sync.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


sync = load_sync()


def markdown_files() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def test_docs_exist() -> None:
    names = {p.name for p in markdown_files()}
    assert {"README.md", "language.md", "cli.md"} <= names


@pytest.mark.parametrize("doc", markdown_files(), ids=lambda p: p.name)
def test_included_blocks_equal_their_sources(doc: Path) -> None:
    lines = doc.read_text(encoding="utf-8").splitlines(keepends=True)
    for include in sync.includes(doc):
        expected = sync.block(include.path, sync.source(include.path, include.region))
        actual = lines[include.line : include.line + len(expected)]
        where = f"{doc.name}:{include.line} ({include.label})"
        assert actual[:1] == expected[:1], (
            f"{where}: no ```{expected[0][3:].strip()} block right after the marker"
        )
        assert actual == expected, f"{where}: the block differs from the source; run: python docs/sync.py"
    assert sync.synced(doc.read_text(encoding="utf-8")) == doc.read_text(encoding="utf-8")


def test_every_yaml_block_in_the_guide_is_included() -> None:
    lines = LANGUAGE.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if line.startswith("```yaml"):
            previous = lines[number - 1] if number else ""
            assert sync.MARKER.match(previous), (
                f"language.md:{number + 1}: a yaml block without an include marker; "
                "put the code in an example file and include it"
            )


def test_every_example_file_is_included_in_the_guide() -> None:
    included = {include.path for include in sync.includes(LANGUAGE)}
    files = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "examples").rglob("*.yaml"))
    assert files
    missing = [f for f in files if f not in included]
    assert not missing, f"not included in docs/language.md: {', '.join(missing)}"


def test_every_tool_kind_has_a_section() -> None:
    headings = [line for line in LANGUAGE.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    for kind in TOOL_KINDS:
        assert any(re.search(rf"`{re.escape(kind)}`", h) for h in headings), f"no heading names `{kind}`"


def cli_names() -> list[tuple[str, str]]:
    """(command, name) for every command, option, secondary option and environment variable."""
    names = [("noetl", opt) for p in cli.params for opt in p.opts if opt.startswith("--")]
    for command_name, command in cli.commands.items():
        names.append((command_name, f"noetl {command_name}"))
        for param in command.params:
            if not isinstance(param, click.Option):
                continue
            names.extend((command_name, opt) for opt in [*param.opts, *param.secondary_opts])
            envvars = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or [])
            names.extend((command_name, envvar) for envvar in envvars)
    return names


@pytest.mark.parametrize(("command", "name"), cli_names(), ids=lambda v: str(v))
def test_cli_doc_names_every_command_option_and_variable(command: str, name: str) -> None:
    text = CLI_DOC.read_text(encoding="utf-8")
    assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), (
        f"docs/cli.md does not mention {name} ({command})"
    )
