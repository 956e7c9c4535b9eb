"""Property tests of the playbook front end: YAML loader, parser, legacy normaliser, templates.

Arbitrary text and near-valid playbooks (maps built from the language's own keys with random
values) must either load or fail with the project's own error (:class:`noetl.errors.NoetlError`):
never another exception, never a hang. A :class:`PlaybookError` saying "please report this as a
NoETL bug" is the parser's safety net for an unexpected exception; it counts as a crash here.
Normalising is idempotent, and rendering any template string raises only :class:`TemplateError`.

Example counts come from the Hypothesis profile (tests/fuzz/conftest.py): a short derandomized
``ci`` run by default, ``HYPOTHESIS_PROFILE=long`` for a long search (docs/testing.md).
"""

from __future__ import annotations

import contextlib
import string
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from noetl.dsl import normalize, parser, templates, yamlload
from noetl.dsl.model import TOOL_KINDS
from noetl.dsl.schema import SHAPES
from noetl.errors import NoetlError, PlaybookError, TemplateError

_BUG = "please report this as a NoETL bug"
_SMALL = yamlload.Limits(max_bytes=64 * 1024, max_nodes=5_000, max_depth=40)
"""Small input limits keep every example fast; the limits themselves are part of what is fuzzed."""

_KEYS = sorted(
    {name for shape in SHAPES.values() for name in shape.fields}
    | {"type", "when", "case", "vars", "retry", "save", "sink", "args", "with", "data", "then"}
    | {"eval", "collection", "element", "iterator", "code", "command", "url", "method", "query"}
    | {"pipeline", "steps", "result", "else", "on_error", "on_success", "task", "tasks", "expr"}
)
_STEPS = ["start", "end", "fetch", "load", "a", "b"]
_KINDS = [*sorted(TOOL_KINDS), "workbook", "python", "nonsense"]
_YAMLISH = st.sampled_from(
    [":", "- ", "{", "}", "[", "]", "&a ", "*a", "!!str ", "!foo ", "? ", "|", ">", "#", "'", '"', "\n", "  "]
)


def _scalars() -> st.SearchStrategy[Any]:
    words = st.sampled_from(_STEPS + _KINDS + _KEYS + ["{{ x }}", "{{ start.result }}", "{% if %}", "1s"])
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        words,
        st.text(max_size=12),
    )


def _values() -> st.SearchStrategy[Any]:
    keys = st.one_of(st.sampled_from(_KEYS + _STEPS), st.text(max_size=6))
    return st.recursive(
        _scalars(),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(keys, inner, max_size=5),
        ),
        max_leaves=25,
    )


@st.composite
def _steps(draw: st.DrawFn) -> dict[str, Any]:
    step: dict[str, Any] = {"step": draw(st.one_of(st.sampled_from(_STEPS), _scalars()))}
    step.update(draw(st.dictionaries(st.sampled_from(_KEYS), _values(), max_size=4)))
    if draw(st.booleans()):
        tool = draw(st.one_of(st.sampled_from(_KINDS), _values()))
        if draw(st.booleans()):
            tool = {
                "kind": draw(st.sampled_from(_KINDS)),
                **draw(st.dictionaries(st.sampled_from(_KEYS), _values(), max_size=3)),
            }
        step["tool"] = tool
    return step


@st.composite
def _playbooks(draw: st.DrawFn) -> dict[str, Any]:
    """A map that looks like a playbook: the usual top-level keys, steps with random fields."""
    doc: dict[str, Any] = {
        "apiVersion": draw(st.sampled_from(["noetl.io/v2", "noetl.io/v1", "v1", "x"])),
        "kind": draw(st.sampled_from(["Playbook", "playbook", "Other"])),
        "metadata": draw(
            st.one_of(st.fixed_dictionaries({"name": st.sampled_from(["p", "demo"])}), _values())
        ),
        "workflow": draw(st.one_of(st.lists(_steps(), max_size=5), _values())),
    }
    for key in draw(st.lists(st.sampled_from(_KEYS), max_size=3)):
        doc[key] = draw(_values())
    return doc


def _yaml_texts() -> st.SearchStrategy[str]:
    """Arbitrary text, and text made of YAML punctuation and the language's words."""
    tokens = st.one_of(_YAMLISH, st.sampled_from(_KEYS + _STEPS), st.text(string.printable, max_size=4))
    return st.one_of(st.text(max_size=300), st.lists(tokens, max_size=60).map("".join))


def _dump(doc: object) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def _parse_or_own_error(text: str, *, strict: bool = False) -> None:
    try:
        parser.parse(text, source="fuzz.yaml", strict=strict)
    except NoetlError as error:
        assert _BUG not in str(error), f"unexpected exception behind a PlaybookError: {error!r}"


@given(_yaml_texts())
def test_yaml_loader_accepts_or_raises_playbook_error(text: str) -> None:
    try:
        yamlload.load(text, "fuzz.yaml", _SMALL)
    except PlaybookError as error:
        assert error.location is not None and error.location.file == "fuzz.yaml"


@given(_yaml_texts())
def test_parser_on_arbitrary_text_raises_only_its_own_errors(text: str) -> None:
    _parse_or_own_error(text)


@given(_playbooks(), st.booleans())
def test_parser_on_near_valid_playbooks_raises_only_its_own_errors(doc: dict[str, Any], strict: bool) -> None:
    _parse_or_own_error(_dump(doc), strict=strict)


def _normalised(text: str) -> object:
    document = yamlload.load(text, "fuzz.yaml")
    return normalize.playbook(document.root, normalize.Rewriter(document, strict=False))


@given(_playbooks())
def test_normalising_is_idempotent(doc: dict[str, Any]) -> None:
    try:
        once = _normalised(_dump(doc))
    except PlaybookError:
        return  # legacy syntax with no canonical form: rejected with a message, nothing to repeat
    document = yamlload.load(_dump(once), "fuzz.yaml")
    rewriter = normalize.Rewriter(document, strict=False)
    twice = normalize.playbook(document.root, rewriter)
    assert twice == once
    assert rewriter.warnings == [], "a normalised playbook still has legacy syntax"


_JINJA = st.sampled_from(
    [
        "{{",
        "}}",
        "{%",
        "%}",
        "{#",
        "#}",
        " ",
        "x",
        "start",
        ".",
        "[",
        "]",
        "(",
        ")",
        "|",
        "'",
        '"',
        "0",
        "1e308",
        "+",
        "-",
        "*",
        "**",
        "/",
        "//",
        "%",
        "~",
        ",",
        ":",
        "=",
        "==",
        "if",
        "else",
        "for",
        "in",
        "range",
        "loop",
        "set",
        "endset",
        "endfor",
        "endif",
        "macro",
        "call",
        "import",
        "include",
        "extends",
        "block",
        "raw",
        "__class__",
        "__globals__",
        "mro",
        "items",
        "keys",
        "tojson",
        "length",
        "default",
        "int",
        "float",
        "join",
        "format",
        "replace",
        "upper",
        "attr",
        "map",
        "select",
        "sum",
        "first",
        "last",
        "none",
        "true",
    ]
)
_CONTEXT = {
    "x": 3,
    "start": {"result": [1, 2, {"a": "b"}], "status": "ok"},
    "workload": {"n": 10, "s": "text", "none": None},
    "items": list(range(5)),
}


@given(st.one_of(st.lists(_JINJA, max_size=30).map("".join), st.text(max_size=80)), st.booleans())
def test_rendering_any_template_raises_only_template_errors(source: str, strict: bool) -> None:
    with contextlib.suppress(TemplateError):
        templates.render({"value": source, "list": [source]}, _CONTEXT, strict=strict)
