"""The playbook language: YAML -> validated, normalised :class:`~noetl.dsl.model.Playbook`.

``noetl.dsl.parse(text)`` and ``noetl.dsl.load(path)`` are the entry points (see
:mod:`noetl.dsl.parser`). They are imported lazily so that importing ``noetl.dsl.model`` alone
does not load the YAML parser.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from noetl.dsl.parser import load, parse

__all__ = ["load", "parse"]


def __getattr__(name: str) -> object:
    if name in __all__:
        from noetl.dsl import parser

        return getattr(parser, name)
    raise AttributeError(f"module 'noetl.dsl' has no attribute '{name}'")
