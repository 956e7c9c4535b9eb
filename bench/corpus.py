"""Measure how many playbooks in a directory tree NoETL accepts, and why the others are rejected.

Usage::

    python bench/corpus.py DIR [--strict] [--json] [--show-warnings]

Written for upstream's public fixture repository (checked out OUTSIDE this repository; none of its
files belong here), but it works on any directory. Every ``*.yaml``/``*.yml`` file whose top level
says ``kind: Playbook`` is checked with ``noetl validate --json`` (one subprocess for the whole
set, exactly what a user would run); other YAML files (subscriptions, manifests, configs) are
counted as skipped. Prints the number that validate, the total, the number that needed legacy
rewrites, and for each rejected file its path and the validator's message, so a person can judge
whether the message names a real problem in the file.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
from pathlib import Path

_PLAYBOOK_KIND = re.compile(r"^kind:\s*['\"]?playbook['\"]?\s*$", re.I | re.M)


def playbook_files(root: Path) -> tuple[list[Path], int]:
    """Playbook YAML files under ``root`` (sorted) and the number of other YAML files skipped."""
    found: list[Path] = []
    skipped = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "node_modules")
        for name in sorted(filenames):
            if not name.endswith((".yaml", ".yml")):
                continue
            path = Path(dirpath, name)
            text = path.read_text(encoding="utf-8", errors="replace")
            if _PLAYBOOK_KIND.search(text):
                found.append(path)
            else:
                skipped += 1
    return found, skipped


def validate(files: list[Path], strict: bool) -> list[dict[str, object]]:
    """Run ``noetl validate --json`` over ``files``; one result object per file."""
    command = [sys.executable, "-m", "noetl", "validate", "--json", *map(str, files)]
    if strict:
        command.insert(4, "--strict")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if len(results) != len(files):
        sys.exit(f"noetl validate printed {len(results)} results for {len(files)} files:\n{done.stderr}")
    return results


def _reason(result: dict[str, object]) -> str:
    error = result.get("error")
    if not isinstance(error, dict):
        return str(error)
    where = ", ".join(
        f"{key} {error[key]}" for key in ("line", "step", "field") if error.get(key) not in (None, "")
    )
    return f"{error.get('message')}" + (f" ({where})" if where else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--strict", action="store_true", help="validate with --strict (no legacy syntax)")
    parser.add_argument("--json", action="store_true", help="print the per-file results as JSON lines")
    parser.add_argument("--show-warnings", action="store_true", help="list the legacy rewrites per file")
    args = parser.parse_args()
    files, skipped = playbook_files(args.directory)
    if not files:
        sys.exit(f"no playbooks (kind: Playbook) under {args.directory}")
    results = validate(files, args.strict)
    valid = [r for r in results if r.get("valid")]
    rewritten = [r for r in valid if r.get("warnings")]
    if args.json:
        for result in results:
            print(json.dumps(result))
        return
    root = str(args.directory).rstrip("/") + "/"
    print(f"playbooks: {len(files)} (other YAML files skipped: {skipped})")
    print(f"valid:     {len(valid)} / {len(files)}  ({len(rewritten)} of them with legacy rewrites)")
    print(f"rejected:  {len(files) - len(valid)}")
    for result in results:
        if not result.get("valid"):
            print(f"  {str(result['file']).removeprefix(root)}: {_reason(result)}")
    if args.show_warnings:
        counts = collections.Counter(
            re.sub(r"^line \d+(, step '[^']*')?: ", "", str(w))
            for r in rewritten
            for w in r.get("warnings", [])  # type: ignore[union-attr]
        )
        print("legacy rewrites:")
        for warning, count in counts.most_common():
            print(f"  {count:4d}  {warning}")


if __name__ == "__main__":
    main()
