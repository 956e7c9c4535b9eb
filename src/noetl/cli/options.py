"""Options shared by the commands that start long-running processes (server, worker, gateway)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

F = TypeVar("F", bound=Callable[..., object])


def log_format_option(command: F) -> F:
    """``--log-format text|json`` (``NOETL_LOG_FORMAT``)."""
    return click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default=None,
        envvar="NOETL_LOG_FORMAT",
        show_envvar=True,
        help="text, or json: one object a line with execution_id, step, command_id [default: text].",
    )(command)
