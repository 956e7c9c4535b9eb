"""Tool registration through entry points, and load-time field checks of the built-in tools."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from noetl.errors import ToolConfigError
from noetl.tools import registry
from noetl.tools.base import Tool, check_config

MINE = ("noop", "http", "postgres", "duckdb", "shell", "playbook", "workbook")

TYPICAL: dict[str, dict[str, Any]] = {
    "noop": {},
    "http": {
        "method": "POST",
        "url": "http://x/y",
        "headers": {"A": "b"},
        "params": {"q": 1},
        "json": {"a": 1},
        "timeout": {"connect": 1, "read": 2},
        "follow_redirects": False,
        "verify_ssl": True,
        "accept_status": [404],
    },
    "postgres": {
        "command": "select %s",
        "params": ["{{ x }}"],
        "schema": "public",
        "as_objects": False,
        "timeout_seconds": 5,
    },
    "duckdb": {"commands": ["select 1", "select 2"], "db_path": "/tmp/x.duckdb", "params": {"a": 1}},
    "shell": {"cmds": ["echo a"], "cwd": "/tmp", "env": {"A": "1"}, "timeout_seconds": 2, "shell": "/bin/sh"},
    "playbook": {"path": "lib/child", "version": 2, "args": {"n": 1}, "return_step": "end", "async": False},
    "workbook": {"name": "classify"},
}

REQUIRED = {
    "http": "url or endpoint",
    "postgres": "command or query",
    "duckdb": "command or commands",
    "shell": "command or cmds",
    "playbook": "path or catalog_id",
}


def test_every_builtin_kind_is_registered() -> None:
    assert set(MINE) | {"python"} <= set(registry.kinds())
    assert registry.kinds() == sorted(registry.kinds())


@pytest.mark.parametrize("kind", MINE)
def test_get_returns_the_module_tool(kind: str) -> None:
    tool = registry.get(kind)
    assert isinstance(tool, Tool) and tool.kind == kind
    module = __import__(f"noetl.tools.{kind}", fromlist=["TOOL"])
    assert tool is module.TOOL


def test_unknown_kind_lists_the_known_ones() -> None:
    with pytest.raises(ToolConfigError) as caught:
        registry.get("htp")
    assert (
        "htp" in caught.value.message and "http" in caught.value.message and "duckdb" in caught.value.message
    )


@pytest.mark.parametrize("kind", MINE)
def test_typical_config_is_accepted(kind: str) -> None:
    check_config(registry.get(kind), TYPICAL[kind], step="s", task="t")


@pytest.mark.parametrize("kind", MINE)
def test_templates_are_accepted_for_any_field(kind: str) -> None:
    tool = registry.get(kind)
    config = {name: "{{ value }}" for name in tool.config_fields if name != "script"}  # one code source
    check_config(tool, config, step="s", task="t")
    if "script" in tool.config_fields:
        check_config(tool, {"script": "{{ value }}"}, step="s", task="t")


@pytest.mark.parametrize("kind", MINE)
def test_unknown_field_is_rejected_by_name(kind: str) -> None:
    with pytest.raises(ToolConfigError) as caught:
        check_config(registry.get(kind), {**TYPICAL[kind], "urll": "x"}, step="s", task="t")
    assert "'urll'" in caught.value.message and f"'{kind}'" in caught.value.message
    assert caught.value.field == "urll" and caught.value.step == "s"


@pytest.mark.parametrize(
    ("kind", "field", "value", "wanted"),
    [
        ("http", "headers", [1], "a map"),
        ("postgres", "params", 3, "a list"),
        ("duckdb", "commands", {"a": 1}, "a list"),
        ("shell", "env", ["A=1"], "a map"),
        ("playbook", "async", 1, "a boolean"),
    ],
)
def test_wrong_type_is_rejected(kind: str, field: str, value: Any, wanted: str) -> None:
    with pytest.raises(ToolConfigError) as caught:
        check_config(registry.get(kind), {**TYPICAL[kind], field: value}, step="s", task="t")
    assert f"'{field}'" in caught.value.message and wanted in caught.value.message


@pytest.mark.parametrize(("kind", "names"), REQUIRED.items())
def test_missing_required_field_is_named(kind: str, names: str) -> None:
    with pytest.raises(ToolConfigError) as caught:
        check_config(registry.get(kind), {}, step="s", task="t")
    assert names in caught.value.message


def test_tool_modules_import_no_heavy_library() -> None:
    modules = ", ".join(f"noetl.tools.{kind}" for kind in MINE)
    code = f"import sys, {modules}; print(sorted({{'httpx', 'psycopg', 'duckdb'}} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_builtin_fast_path_matches_the_installed_entry_points():
    """Built-in kinds resolve without scanning distributions; they must be what the group says."""
    installed = registry.entry_points()
    for kind, target in registry.BUILTIN.items():
        assert kind in installed, f"built-in tool '{kind}' is not registered in the {registry.GROUP} group"
        assert installed[kind].value == target
        assert installed[kind].load() is registry.get(kind)
