"""The YAML that ``noetl migrate`` writes: comments kept by line, text that reads back exactly."""

from __future__ import annotations

import textwrap

from noetl.dsl import migration, yamlload

SOURCE = textwrap.dedent(
    """\
    # header comment
    apiVersion: noetl.io/v1
    kind: Playbook
    metadata: {name: c}   # trailing on metadata
    workflow:
      # above the step
      - step: start       # on the step line
        tool: python
        code: |
          # not a comment: part of the code
          result = {"a": "x # y", 'b': 1}
        next: end
      - step: end
    # at the end
    """
)


def test_comments_stay_on_their_keys_and_code_is_untouched() -> None:
    result = migration.migrate(SOURCE, source="c.yaml")
    lines = result.text.splitlines()
    assert lines[0] == "# header comment"
    assert "metadata:  # trailing on metadata" in lines
    index = lines.index("  # above the step")
    assert lines[index + 1] == "  - step: start  # on the step line"
    assert "        # not a comment: part of the code" in lines
    assert lines[-1] == "# at the end"
    assert yamlload.load(result.text).root["workflow"][0]["tool"]["code"] == (  # type: ignore[index,call-overload]
        '# not a comment: part of the code\nresult = {"a": "x # y", \'b\': 1}\n'
    )
    assert len(result.warnings) == 4 and result.dropped_comments == ()


def test_canonical_text_is_returned_unchanged() -> None:
    canonical = "apiVersion: noetl.io/v2\nkind: Playbook\nmetadata: {name: c}  # x\nworkflow: [{step: s, tool: {kind: noop}}]\n"
    result = migration.migrate(canonical)
    assert (result.text, result.warnings) == (canonical, ())


def test_awkward_strings_survive() -> None:
    text = (
        "apiVersion: noetl.io/v1\nkind: Playbook\nmetadata: {name: c}\nworkflow:\n"
        "  - step: s\n    tool: python\n"
        "    code: \"x = ' trailing '  \\n\\ty = 'tab'\\n\\n\"\n"
        '    args: {"200": "yes", n: "null", e: "", m: "a: b", q: "{{ x }}"}\n'
    )
    result = migration.migrate(text)
    task = yamlload.load(result.text).root["workflow"][0]["tool"]  # type: ignore[index,call-overload]
    assert task["code"] == "x = ' trailing '  \n\ty = 'tab'\n\n"
    assert task["input"] == {"200": "yes", "n": "null", "e": "", "m": "a: b", "q": "{{ x }}"}
