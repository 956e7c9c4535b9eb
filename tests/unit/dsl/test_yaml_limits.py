"""YAML input limits (issue 17): alias bombs, depth and size are refused while the text is read.

The alias bomb is counted, not expanded: its load returns (with an error naming the limit and its
setting) after building only the few values its text holds.
"""

from __future__ import annotations

import pytest

from noetl.dsl import parser, yamlload
from noetl.dsl.yamlload import InputTooLarge, Limits
from noetl.errors import PlaybookError


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """``a: &a [lol x9]``, ``b: &b [*a x9]``, ...: width**levels values once expanded."""
    lines = ["apiVersion: noetl.io/v2", "kind: Playbook", "metadata: {name: bomb, path: bomb}", "workload:"]
    lines.append("  l0: &l0 [" + ", ".join(["lol"] * width) + "]")
    for level in range(1, levels):
        lines.append(f"  l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * width) + "]")
    lines += ["workflow:", "  - step: start", "    tool: {kind: noop}"]
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_with_the_limit_and_its_setting() -> None:
    with pytest.raises(InputTooLarge) as caught:
        parser.parse(alias_bomb(), source="bomb.yaml")
    error = caught.value
    assert error.http_status == 413 and error.exit_code == 2
    assert "2000000 values with its aliases expanded" in error.message
    assert "NOETL_YAML_MAX_NODES" in error.message
    assert error.location is not None and error.location.file == "bomb.yaml" and error.location.line


def test_aliases_are_counted_each_time_they_are_used() -> None:
    text = "a: &a [1, 2, 3]\nb: [*a, *a]\n"  # root, a, 3 scalars, b, 2 x (a + 3 scalars)
    assert yamlload.load(text, limits=Limits(max_nodes=14)).root == {"a": [1, 2, 3], "b": [[1, 2, 3]] * 2}
    with pytest.raises(InputTooLarge, match="more than 13 values"):
        yamlload.load(text, limits=Limits(max_nodes=13))


def test_depth_counts_nesting_through_aliases() -> None:
    text = "a: &a [[[1]]]\nb: {c: *a}\n"  # root > b > c's list > list > list: depth 5
    assert yamlload.load(text, limits=Limits(max_depth=5)).root["b"] == {"c": [[[1]]]}  # type: ignore[index]
    with pytest.raises(InputTooLarge, match=r"more than 4 deep .*NOETL_YAML_MAX_DEPTH"):
        yamlload.load(text, limits=Limits(max_depth=4))


def test_text_over_the_size_limit_is_refused_before_parsing() -> None:
    text = "a: [" + "," * 1000 + "\n"  # not even valid YAML: the size check comes first
    with pytest.raises(InputTooLarge, match="NOETL_YAML_MAX_BYTES"):
        yamlload.load(text, "big.yaml", limits=Limits(max_bytes=100))


def test_limits_from_the_environment() -> None:
    limits = Limits.from_env({"NOETL_YAML_MAX_NODES": "10", "NOETL_YAML_MAX_DEPTH": ""})
    assert limits == Limits(max_nodes=10)
    with pytest.raises(PlaybookError, match="NOETL_YAML_MAX_BYTES='lots'"):
        Limits.from_env({"NOETL_YAML_MAX_BYTES": "lots"})


def test_configure_sets_the_default_of_every_load() -> None:
    try:
        yamlload.configure(Limits(max_nodes=3))
        with pytest.raises(InputTooLarge):
            yamlload.load("[1, 2, 3]")
    finally:
        yamlload.configure(Limits())
    assert yamlload.load("[1, 2, 3]").root == [1, 2, 3]
