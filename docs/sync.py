"""Keep the code blocks in docs/*.md equal to the files they show.

A line ``<!-- include: examples/loops.yaml -->`` in a Markdown file is an include marker: the fenced
code block right after it holds that file, verbatim. ``<!-- include: examples/loops.yaml#parallel -->``
holds one region of it instead: the lines between ``# region: parallel`` and the next ``# endregion``,
with their common indentation removed. Paths are relative to the repository root.

    python docs/sync.py           # rewrite the blocks after every marker in docs/*.md
    python docs/sync.py --check   # change nothing; list stale blocks and exit 1 if there are any

``tests/acceptance/test_docs.py`` runs the same comparison, so a stale block fails the tests.
"""

from __future__ import annotations

import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

MARKER = re.compile(r"^<!-- include: (?P<path>[^#\s]+)(?:#(?P<region>[\w.-]+))? -->\s*$")
REGION_START = re.compile(r"^\s*# region: (?P<name>[\w.-]+)\s*$")
REGION_END = re.compile(r"^\s*# endregion\s*$")
FENCE = "```"
LANGUAGES = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".py": "python", ".sh": "bash"}


class IncludeError(Exception):
    """A marker names a file or region that does not exist, or a block is not closed."""


@dataclass(frozen=True)
class Include:
    """One include marker: where it is and what it shows."""

    doc: Path
    line: int
    path: str
    region: str | None

    @property
    def label(self) -> str:
        return self.path + (f"#{self.region}" if self.region else "")


def source(path: str, region: str | None, root: Path = ROOT) -> str:
    """The text an include shows: the whole file, or the dedented lines of one region."""
    file = root / path
    if not file.is_file():
        raise IncludeError(f"included file {path} does not exist")
    text = file.read_text(encoding="utf-8")
    if region is None:
        return text
    lines: list[str] | None = None
    for line in text.splitlines(keepends=True):
        start = REGION_START.match(line)
        if lines is None and start and start.group("name") == region:
            lines = []
        elif lines is not None and REGION_END.match(line):
            return textwrap.dedent("".join(lines))
        elif lines is not None:
            lines.append(line)
    raise IncludeError(f"{path} has no region '{region}' (closed by '# endregion')")


def block(path: str, text: str) -> list[str]:
    """``text`` as the lines of a fenced code block, its language taken from the file name."""
    language = LANGUAGES.get(Path(path).suffix, "text")
    body = text if text.endswith("\n") else text + "\n"
    return [f"{FENCE}{language}\n", *body.splitlines(keepends=True), f"{FENCE}\n"]


def includes(doc: Path) -> list[Include]:
    """The include markers of one Markdown file, in order."""
    found = []
    for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), start=1):
        match = MARKER.match(line)
        if match:
            found.append(Include(doc, number, match.group("path"), match.group("region")))
    return found


def synced(text: str, root: Path = ROOT) -> str:
    """``text`` with the block after every include marker replaced by the current source."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        out.append(line if line.endswith("\n") else line + "\n")
        index += 1
        match = MARKER.match(line)
        if match is None:
            continue
        path, region = match.group("path"), match.group("region")
        out.extend(block(path, source(path, region, root)))
        index = _skip_block(lines, index, path)
    return "".join(out)


def _skip_block(lines: list[str], index: int, label: str) -> int:
    """The index after the fenced block starting at ``index`` (``index`` itself if none starts)."""
    if index >= len(lines) or not lines[index].startswith(FENCE):
        return index
    for end in range(index + 1, len(lines)):
        if lines[end].rstrip("\n") == FENCE:
            return end + 1
    raise IncludeError(f"the code block after the include of {label} is never closed")


def stale_docs(docs: list[Path]) -> list[Path]:
    """The Markdown files whose included blocks differ from their sources."""
    return [doc for doc in docs if synced(doc.read_text(encoding="utf-8")) != doc.read_text(encoding="utf-8")]


def main(argv: list[str]) -> int:
    check = "--check" in argv
    docs = sorted(DOCS.glob("*.md"))
    try:
        stale = stale_docs(docs)
    except IncludeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for doc in stale:
        if check:
            print(f"stale: {doc.relative_to(ROOT)} (run: python docs/sync.py)", file=sys.stderr)
        else:
            doc.write_text(synced(doc.read_text(encoding="utf-8")), encoding="utf-8")
            print(f"updated {doc.relative_to(ROOT)}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
