"""Legacy names inside templates -> the canonical ones (REFERENCE §4.14, Appendix A).

Older playbooks read the producing step's result through names that no longer exist:
``{{ result.x }}`` and ``{{ this.x }}`` (G0), ``{{ response.x }}`` (G2 ``case``), and
``{{ outcome.result }}`` / ``{{ outcome.* }}`` (the docs era). In routing, ``set`` and policies
the canonical name is ``output.data`` (``output`` for the envelope). The rewrite works on the
expression text inside ``{{ }}``/``{% %}`` only, and skips a name when it is a field
(``a.result``), a keyword argument (``result=1``) or quoted (``'result'``), so that other text is
never touched.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from noetl.dsl.model import JSON

ROUTING: Mapping[str, str] = {
    "outcome.result": "output.data",
    "outcome": "output",
    "result": "output.data",
    "response": "output.data",
    "this": "output.data",
}
"""Names a legacy arc, ``set`` or policy used for the result it is routing on."""

_TEMPLATE = re.compile(r"(\{\{|\{%)(.*?)(\}\}|%\})", re.S)


def _pattern(old: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w.'\"]){re.escape(old)}(?![\w'\"])(?!\s*=(?!=))")


def text(expression: str, renames: Mapping[str, JSON]) -> str:
    """``expression`` (the inside of one ``{{ }}``) with each old name replaced by its new one."""
    for old, new in renames.items():
        if isinstance(new, str):
            expression = _pattern(old).sub(new, expression)
    return expression


def template(value: JSON, renames: Mapping[str, JSON]) -> JSON:
    """``value`` with the names renamed inside its template parts; non-strings are returned as is."""
    if not isinstance(value, str) or not renames or "{" not in value:
        return value
    return _TEMPLATE.sub(lambda m: m.group(1) + text(m.group(2), renames) + m.group(3), value)


def deep(value: JSON, renames: Mapping[str, JSON]) -> JSON:
    """:func:`template` applied to every string inside ``value`` (maps and lists are copied)."""
    if isinstance(value, dict):
        return {key: deep(item, renames) for key, item in value.items()}
    if isinstance(value, list):
        return [deep(item, renames) for item in value]
    return template(value, renames)


def used(value: JSON, renames: Mapping[str, JSON]) -> list[str]:
    """The old names that :func:`deep` would rename in ``value``, in ``renames`` order."""
    found: list[str] = []
    for old in renames:
        if old not in found and deep(value, {old: "\0"}) != value:
            found.append(old)
    return found


def without(renames: Mapping[str, str], names: frozenset[str]) -> dict[str, JSON]:
    """``renames`` minus the names that are taken by a step or a variable of the playbook."""
    return {old: new for old, new in renames.items() if old.split(".")[0] not in names}
