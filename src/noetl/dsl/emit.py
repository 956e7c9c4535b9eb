"""Canonical playbook values -> YAML text that keeps the source's comments (for ``noetl migrate``).

PyYAML drops comments when it parses, so this module writes the YAML itself (block style, keys in
the order of the normalised playbook, scalars quoted by PyYAML) and puts comments back from the
source text by line: the loader remembers the line of every key and list item, and rewrites keep
those positions (:meth:`noetl.dsl.yamlload.Document.adopt`). A comment on the line of a key that is
still there is kept on that key's line; a block of comment lines above such a key stays above
it. Comments whose line no longer holds a key (a construct that was rewritten away) are listed
by :attr:`Emitter.dropped` so the caller can say so. The text is checked to load back to the
same values (:func:`canonical_yaml`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import yaml

from noetl.dsl.model import JSON
from noetl.dsl.yamlload import Document

_Dumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_STEP_ORDER = ("step", "desc", "spec", "loop", "tool", "input", "set", "next")
_TASK_ORDER = ("name", "kind")
_ARC_ORDER = ("step", "when", "set")
_TOP_LEVEL_ORDER = (
    "apiVersion",
    "kind",
    "metadata",
    "executor",
    "keychain",
    "workload",
    "workbook",
    "workflow",
)


@dataclass
class Comments:
    """The comments of a YAML text: whole-line comments and trailing comments, by 0-based line."""

    lines: list[str]
    whole: dict[int, str] = field(default_factory=dict)
    trailing: dict[int, str] = field(default_factory=dict)
    used: set[int] = field(default_factory=set)

    @classmethod
    def of(cls, text: str) -> Comments:
        lines = text.splitlines()
        found = cls(lines)
        inside = _scalar_lines(text)
        for number, line in enumerate(lines):
            if number in inside:
                continue
            stripped = line.lstrip()
            if stripped.startswith("#"):
                found.whole[number] = stripped
                continue
            at = _comment_start(line)
            if at is not None:
                found.trailing[number] = line[at:].strip()
        return found

    def above(self, line: int | None) -> list[str]:
        """The block of whole-line comments right above ``line`` (blank lines allowed between)."""
        if line is None:
            return []
        block: list[int] = []
        number = line - 1
        while number >= 0 and number not in self.used:
            if number in self.whole:
                block.append(number)
            elif self.lines[number].strip():
                break
            number -= 1
        self.used.update(block)
        return [self.whole[n] for n in reversed(block)]

    def after(self, line: int | None) -> str:
        """The trailing comment of ``line`` (once), with its separating spaces."""
        if line is None or line in self.used or line not in self.trailing:
            return ""
        self.used.add(line)
        return "  " + self.trailing[line]

    def rest(self, last: int) -> list[str]:
        """Whole-line comments after ``last``, the last line that held a key (the end of the file)."""
        found = [n for n in sorted(self.whole) if n > last and n not in self.used]
        self.used.update(found)
        return [self.whole[n] for n in found]

    def dropped(self) -> list[int]:
        """1-based lines of comments that did not find a place in the output."""
        every = set(self.whole) | set(self.trailing)
        return sorted(n + 1 for n in every - self.used)


def _scalar_lines(text: str) -> set[int]:
    """Lines inside multi-line scalars (block literals, folded or quoted text): not comments."""
    inside: set[int] = set()
    try:
        events = list(yaml.parse(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
    except yaml.YAMLError:
        return inside
    for event in events:
        start, end = event.start_mark, event.end_mark
        if (
            isinstance(event, yaml.ScalarEvent)
            and start is not None
            and end is not None
            and end.line > start.line
        ):
            inside.update(range(start.line + 1, end.line + 1))
    return inside


def _comment_start(line: str) -> int | None:
    """Index of a trailing ``#`` comment in one YAML line, outside quotes; None if there is none."""
    quote: str | None = None
    for index, char in enumerate(line):
        if quote is not None:
            if char == quote:
                quote = None
        elif char in "'\"" and (index == 0 or line[index - 1] in " \t:[{,-"):
            quote = char
        elif char == "#" and index > 0 and line[index - 1] in " \t":
            return index
    return None


class Emitter:
    """Writes one document; ``document`` gives the source line of each key, ``comments`` the text's."""

    def __init__(self, document: Document | None, comments: Comments | None) -> None:
        self.document = document
        self.comments = comments
        self.out: list[str] = []
        self.last_line = -1

    def line(self, container: object, key: str | int) -> int | None:
        found = self.document.line_of(container, key) if self.document is not None else None
        if found is not None:
            self.last_line = max(self.last_line, found)
        return found

    def ordered(self, value: dict[str, JSON]) -> dict[str, JSON]:
        """Steps and tasks with their keys in the conventional order (``step``/``name``, ``kind`` first)."""
        order: tuple[str, ...]
        if "step" in value:
            order = _STEP_ORDER if "tool" in value else _ARC_ORDER
        else:
            order = _TASK_ORDER if "kind" in value and "apiVersion" not in value else ()
        if not order:
            return value
        new = {k: value[k] for k in order if k in value}
        new.update((k, v) for k, v in value.items() if k not in new)
        if self.document is not None:
            self.document.adopt(new, value)
        return new

    def above(self, line: int | None, indent: int) -> None:
        if self.comments is not None:
            self.out.extend(" " * indent + c for c in self.comments.above(line))

    def after(self, line: int | None) -> str:
        return self.comments.after(line) if self.comments is not None else ""

    def mapping(self, value: dict[str, JSON], indent: int) -> None:
        value = self.ordered(value)
        for key, item in value.items():
            line = self.line(value, key)
            self.above(line, indent)
            self.entry(" " * indent + _scalar(key) + ":", item, indent, line)

    def sequence(self, value: list[JSON], indent: int) -> None:
        for index, item in enumerate(value):
            line = self.line(value, index)
            self.above(line, indent)
            if isinstance(item, dict | list) and item:
                start = len(self.out)
                if isinstance(item, dict):
                    self.mapping(item, indent + 2)
                else:
                    self.sequence(item, indent + 2)
                first = next(
                    i for i in range(start, len(self.out)) if not self.out[i].lstrip().startswith("#")
                )
                self.out[first] = " " * indent + "- " + self.out[first][indent + 2 :]
            else:
                self.entry(" " * indent + "-", item, indent, line)

    def entry(self, head: str, item: JSON, indent: int, line: int | None) -> None:
        """``head`` (``key:`` or ``-``) followed by ``item``: on the same line, or as a nested block."""
        if isinstance(item, dict) and item:
            self.out.append(head + self.after(line))
            self.mapping(item, indent + 2)
        elif isinstance(item, list) and item:
            self.out.append(head + self.after(line))
            self.sequence(item, indent + 2)
        elif isinstance(item, str) and _literal_ok(item):
            chomp = (
                ""
                if item.endswith("\n") and not item.endswith("\n\n")
                else "-"
                if not item.endswith("\n")
                else "+"
            )
            self.out.append(f"{head} |{chomp}{self.after(line)}")
            body = item[:-1] if item.endswith("\n") else item
            self.out.extend((" " * (indent + 2) + text) if text else "" for text in body.split("\n"))
        else:
            self.out.append(f"{head} {_scalar(item)}{self.after(line)}")


def _literal_ok(text: str) -> bool:
    """Multi-line text that a ``|`` block writes exactly (no leading space, no trailing spaces)."""
    if "\n" not in text.rstrip("\n") or text.startswith((" ", "\n", "\t")):
        return False
    if any(ch in text for ch in "\r\t\x85\u2028\u2029"):
        return False
    return all(part == part.rstrip() and part.isprintable() for part in text.split("\n"))


def _scalar(value: JSON) -> str:
    """One scalar (or an empty map/list) as YAML flow text, quoted as PyYAML sees fit."""
    text = yaml.dump(value, Dumper=_Dumper, default_flow_style=True, width=1_000_000, allow_unicode=True)
    text = text.rstrip("\n")
    text = text[: -len("\n...")] if text.endswith("\n...") else text
    if isinstance(value, str) and text.startswith("'"):
        return json.dumps(value, ensure_ascii=False)  # JSON strings are YAML double-quoted scalars
    return text


def ordered(root: dict[str, JSON]) -> dict[str, JSON]:
    """The top-level keys in the conventional order (apiVersion first, workflow last)."""
    first = {key: root[key] for key in _TOP_LEVEL_ORDER if key in root}
    return {**first, **{k: v for k, v in root.items() if k not in first}}


def to_yaml(root: JSON, document: Document | None = None, source: str | None = None) -> tuple[str, list[int]]:
    """``root`` as YAML text, with the comments of ``source`` (positions from ``document``); also the
    1-based lines of source comments that could not be placed."""
    comments = Comments.of(source) if source is not None else None
    emitter = Emitter(document, comments)
    if isinstance(root, dict) and root:
        top = ordered(root)
        if document is not None:
            document.adopt(top, root)
        emitter.mapping(top, 0)
    else:
        emitter.out.append(_scalar(root))
    if comments is not None:
        emitter.out.extend(comments.rest(emitter.last_line))
    text = "\n".join(emitter.out) + "\n"
    return re.sub(r"\n{3,}", "\n\n", text), comments.dropped() if comments is not None else []
