"""One legacy playbook text -> the canonical playbook text, for ``noetl migrate`` (issue 6).

The same rewrites run as when a playbook is loaded (:mod:`noetl.dsl.normalize`), so a migrated
playbook behaves as the original does; the result is written as YAML with the source's comments
(:mod:`noetl.dsl.emit`) and checked twice before it is returned: it must load back to exactly the
normalised values, and it must pass the parser in strict mode (no legacy syntax left).
"""

from __future__ import annotations

from dataclasses import dataclass

from noetl.dsl import emit, normalize, parser, yamlload
from noetl.errors import Location, PlaybookError


@dataclass(frozen=True, slots=True)
class Migration:
    text: str
    """The canonical YAML."""
    warnings: tuple[str, ...]
    """One line per rewrite (as ``noetl validate`` prints them); empty when already canonical."""
    dropped_comments: tuple[int, ...]
    """1-based source lines of comments that had no place left in the output."""


def migrate(text: str, *, source: str | None = None) -> Migration:
    """Rewrite ``text`` to the canonical format; PlaybookError when it is not a valid playbook."""
    parser.parse(text, source=source)  # any problem is reported as validation reports it
    document = yamlload.load(text, source)
    rewriter = normalize.Rewriter(document, strict=False)
    root = normalize.playbook(document.root, rewriter)
    if not rewriter.warnings:
        return Migration(text, (), ())
    out, dropped = emit.to_yaml(root, document, text)
    if yamlload.load(out).root != root:
        raise PlaybookError(
            "the migrated YAML does not read back as the rewritten playbook; "
            "please report this as a NoETL bug",
            location=Location(source),
        )
    parser.parse(out, source=f"{source or 'playbook'} (migrated)", strict=True)
    return Migration(out, tuple(rewriter.warnings), tuple(dropped))
