"""Boolean query values: the one parser the gateway and the server share.

A flag such as ``include_data`` is true for ``1``, ``true``, ``yes``, ``on`` and false for ``0``,
``false``, ``no``, ``off`` (any case, surrounding blanks ignored); anything else is an error, never a
guess. The gateway authorizes on the value this function gives and forwards it re-encoded as
``true``/``false``, and the server parses what it receives with the same function, so the two can
never disagree about what a request asked for (issue 10: ``include_data=on`` once read as false by
the gateway and as true by the server).
"""

from __future__ import annotations

from typing import Final

TRUE: Final = frozenset({"1", "true", "yes", "on"})
FALSE: Final = frozenset({"0", "false", "no", "off"})


def parse(raw: str, name: str = "flag") -> bool:
    """The boolean ``raw`` names; ValueError (saying which values are accepted) otherwise."""
    lowered = raw.strip().lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    raise ValueError(f"'{name}' must be true or false (also 1/0, yes/no, on/off), got {raw!r}")


def canonical(value: bool) -> str:
    """How a flag is forwarded: ``true`` or ``false``."""
    return "true" if value else "false"
