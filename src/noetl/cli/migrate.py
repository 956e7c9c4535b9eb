"""``noetl migrate FILE... [--write | --check]``: legacy playbooks -> the canonical format.

The rewrites are the ones ``noetl run``/``validate`` apply when they load a playbook
(:mod:`noetl.dsl.migration`), so the migrated file behaves as the original. Without ``--write``
the canonical YAML goes to stdout (one document per file, ``---`` between them); the warnings that
name each rewrite, and comments that had no place left, go to stderr. Exit code 2 when a file is
not a valid playbook (nothing is written for it), 1 with ``--check`` when a file would change.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from noetl.errors import NoetlError, UsageError

if TYPE_CHECKING:
    from noetl.dsl.migration import Migration


@click.command()
@click.argument("playbooks", nargs=-1, required=True, type=click.Path())
@click.option("--write", is_flag=True, help="Rewrite each file in place instead of printing it.")
@click.option("--check", is_flag=True, help="Change nothing; exit 1 if any file uses legacy syntax.")
@click.option("--quiet", "-q", is_flag=True, help="Do not list the rewrites on stderr.")
def migrate(playbooks: tuple[str, ...], write: bool, check: bool, quiet: bool) -> None:
    """Rewrite legacy playbook syntax to the canonical format (keeps comments where it can)."""
    from noetl.dsl import migration

    if write and check:
        raise UsageError("give --write or --check, not both")
    invalid = changed = 0
    for index, name in enumerate(playbooks):
        try:
            text = _read(name)
            result = migration.migrate(text, source=name)
        except NoetlError as exc:
            invalid += 1
            click.echo(f"error: {exc}", err=True)
            continue
        changed += bool(result.warnings)
        _report(name, result, quiet=quiet, check=check)
        if write:
            if result.warnings:
                Path(name).write_text(result.text, encoding="utf-8")
        elif not check:
            if index:
                click.echo("---")
            click.echo(result.text, nl=False)
    if invalid:
        sys.exit(2)
    if check and changed:
        sys.exit(1)


def _read(name: str) -> str:
    try:
        return Path(name).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{name}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise UsageError(f"cannot read playbook file '{name}': {exc.strerror or exc}") from None


def _report(name: str, result: Migration, *, quiet: bool, check: bool) -> None:
    if not result.warnings:
        if check or not quiet:
            click.echo(f"{name}: already canonical", err=True)
        return
    if check:
        click.echo(f"{name}: {len(result.warnings)} legacy construct(s) to rewrite", err=True)
    if quiet:
        return
    for warning in result.warnings:
        click.echo(f"{name}: {warning}", err=True)
    if result.dropped_comments:
        lines = ", ".join(map(str, result.dropped_comments))
        click.echo(f"{name}: comments on line(s) {lines} had no place in the canonical form", err=True)
