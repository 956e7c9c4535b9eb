"""What a catalog path may look like (``metadata.path``; the name playbooks are registered under).

A catalog path is one or more parts separated by ``/``; each part is made of ASCII letters,
digits, ``_``, ``-`` and ``.``, and is not ``.`` or ``..``. Nothing else is accepted: no leading or
trailing ``/``, no empty parts, no blanks (a trailing space, a newline), no backslash, no
non-ASCII character (so a Cyrillic ``\\u0430`` cannot pass for a Latin ``a`` and ``finance/report`` has
exactly one spelling). Authorization matches these paths against patterns (``finance/*``), so one
spelling per playbook is what makes a pattern mean what it says.
"""

from __future__ import annotations

import re
from typing import Final

PART: Final = re.compile(r"[A-Za-z0-9_.\-]+")
MAX_LENGTH: Final = 512
RULE: Final = (
    "a catalog path is slash-separated parts of ASCII letters, digits, '_', '-' and '.', "
    "without '.' or '..' parts, empty parts, blanks or a leading '/'"
)


def problem(path: str) -> str | None:
    """None when ``path`` is a valid catalog path, else what is wrong with it (one phrase)."""
    if not path:
        return "it is empty"
    if len(path) > MAX_LENGTH:
        return f"it is longer than {MAX_LENGTH} characters"
    if path.startswith("/"):
        return "it starts with '/'"
    for part in path.split("/"):
        if part == "":
            return "it has an empty part ('//' or a trailing '/')"
        if part in (".", ".."):
            return f"it has a '{part}' part"
        if not PART.fullmatch(part):
            bad = next(c for c in part if not PART.fullmatch(c))
            return f"part '{part}' has the character {bad!r} (U+{ord(bad):04X})"
    return None
