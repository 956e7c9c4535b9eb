"""The ``noetl`` command line.

Every command keeps its imports inside its function, so ``noetl run`` pays only for what it uses.
Errors from NoETL print as ``error: <where>: <what>`` on stderr, never as a traceback; exit code 2
means the playbook or the command line is invalid, 1 that an execution failed or was cancelled.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from noetl import __version__
from noetl.errors import NoetlError


class _Group(click.Group):
    """Turns NoetlError into a one-line message and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NoetlError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="noetl")
def cli() -> None:
    """NoETL: run declarative YAML playbooks locally or on a server."""


@cli.command()
@click.argument("playbook", type=click.Path(dir_okay=False))
@click.option(
    "--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set a workload key (YAML scalar or JSON)."
)
@click.option("--payload", "--workload", "payload", metavar="JSON", help="Workload keys as a JSON object.")
@click.option(
    "--credentials",
    type=click.Path(dir_okay=False),
    envvar="NOETL_CREDENTIALS_FILE",
    show_envvar=True,
    help="YAML or JSON file: name -> {type, data}.",
)
@click.option(
    "--catalog",
    "catalogs",
    multiple=True,
    type=click.Path(file_okay=False),
    envvar="NOETL_CATALOG",
    show_envvar=True,
    help="Directory searched for sub-playbooks (repeatable).",
)
@click.option(
    "--events", "events_file", type=click.Path(dir_okay=False), help="Write the event log as JSON lines."
)
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as one JSON object.")
@click.option("--strict", is_flag=True, help="Reject legacy syntax instead of rewriting it.")
@click.option(
    "--runtime",
    "-r",
    type=click.Choice(["local"]),
    default="local",
    envvar="NOETL_RUNTIME",
    show_envvar=True,
    help="Where to run.",
)
@click.option(
    "--max-parallel",
    type=click.IntRange(min=1),
    default=64,
    envvar="NOETL_MAX_PARALLEL",
    show_envvar=True,
    help="Default cap of a parallel loop without max_in_flight.",
)
@click.option(
    "--python-workers",
    type=click.IntRange(min=1),
    default=None,
    envvar="NOETL_PYTHON_WORKERS",
    show_envvar=True,
    help="Processes in the python tool pool [default: CPU count, at least 2].",
)
def run(
    playbook: str,
    sets: tuple[str, ...],
    payload: str | None,
    credentials: str | None,
    catalogs: tuple[str, ...],
    events_file: str | None,
    as_json: bool,
    strict: bool,
    runtime: str,
    max_parallel: int,
    python_workers: int | None,
) -> None:
    """Run PLAYBOOK in this process (no server, no database)."""
    from noetl.cli import run as run_cmd

    code = run_cmd.main(
        playbook,
        sets=sets,
        payload=payload,
        credentials=credentials,
        catalogs=catalogs,
        events_file=events_file,
        as_json=as_json,
        strict=strict,
        max_parallel=max_parallel,
        python_workers=python_workers,
    )
    sys.exit(code)


@cli.command()
@click.argument("playbooks", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--strict", is_flag=True, help="Reject legacy syntax instead of rewriting it.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per playbook.")
def validate(playbooks: tuple[str, ...], strict: bool, as_json: bool) -> None:
    """Check playbooks without running them; exit 2 if any is invalid."""
    import json

    from noetl.runtime import loader

    failed = 0
    for path in playbooks:
        try:
            pb = loader.load(path, strict=strict)
        except NoetlError as exc:
            failed += 1
            if as_json:
                click.echo(json.dumps({"file": path, "valid": False, "error": exc.to_dict()}))
            else:
                click.echo(f"✗ {exc}", err=True)
            continue
        if as_json:
            click.echo(
                json.dumps({"file": path, "valid": True, "path": pb.path, "warnings": list(pb.warnings)})
            )
        else:
            click.echo(f"✓ {path} ({pb.path}, {len(pb.workflow)} steps)")
            for warning in pb.warnings:
                click.echo(f"  warning: {warning}")
    sys.exit(2 if failed else 0)


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the playbook format."""
    import json

    from noetl.dsl import schema as dsl_schema

    click.echo(json.dumps(dsl_schema.json_schema(), indent=2))


def main() -> None:
    cli(prog_name="noetl")


if __name__ == "__main__":
    main()
