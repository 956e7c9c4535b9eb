"""The duckdb tool with real DuckDB databases, in memory and on files (DECISIONS 8, 11)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from noetl.dsl.model import JSON
from noetl.errors import ToolConfigError, ToolError
from noetl.tools.base import Call
from noetl.tools.duckdb import TOOL


def call(
    config: Mapping[str, JSON], *, input: Mapping[str, JSON] | None = None, timeout: float | None = None
) -> Call:
    return Call("e1", "sql", "sql", "duckdb", config, input or {}, None, timeout)


async def run(config: Mapping[str, JSON], **kw: Any) -> Any:
    return await TOOL.run(call(config, **kw))


async def failure(config: Mapping[str, JSON], **kw: Any) -> ToolError:
    with pytest.raises(ToolError) as caught:
        await TOOL.run(call(config, **kw))
    return caught.value


async def test_query_statement_and_last_statement_in_memory() -> None:
    result = await run(
        {
            "command": "create table t(a int, b text); insert into t values (1, 'x'), (2, 'y'); select * from t order by a"
        }
    )
    assert result == {"columns": ["a", "b"], "rows": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}], "row_count": 2}
    assert await run({"command": "create table t(a int); insert into t values (1), (2), (3)"}) == {
        "row_count": 3
    }
    assert await run({"command": "create table t(a int)"}) == {"row_count": 0}


async def test_each_in_memory_call_gets_a_fresh_database() -> None:
    await run({"command": "create table kept(a int)"})
    err = await failure({"command": "select * from kept"})
    assert err.error_kind == "duckdb" and err.details == {"duckdb": {"error_type": "CatalogException"}}
    assert "kept" in err.message and err.retryable is False and err.step == "sql"


async def test_file_database_persists_between_calls(tmp_path: Path) -> None:
    db = str(tmp_path / "x.duckdb")
    await run(
        {"db_path": db, "command": "create table t(a int, b text); insert into t values (1, 'x'), (2, 'y')"}
    )
    assert await run({"database": db, "command": "update t set b = 'z'"}) == {"row_count": 2}
    result = await run({"db_path": db, "query": "select b from t order by a"})
    assert result["rows"] == [{"b": "z"}, {"b": "z"}]


async def test_list_of_commands_runs_in_order() -> None:
    for field in ("commands", "cmds", "queries"):
        result = await run(
            {
                field: [
                    "create table t(a int)",
                    "insert into t values (5); insert into t values (6)",
                    "select sum(a) as s from t",
                ]
            }
        )
        assert result == {"columns": ["s"], "rows": [{"s": 11}], "row_count": 1}


async def test_positional_params_are_handed_out_statement_by_statement() -> None:
    result = await run(
        {
            "command": "create table t(a int, b text); insert into t values (?, ?); insert into t values ($1, $2); select * from t where a > ? order by a",
            "params": [1, "O'Brien; drop table t", 2, "y", 0],
        }
    )
    assert result["rows"] == [{"a": 1, "b": "O'Brien; drop table t"}, {"a": 2, "b": "y"}]


async def test_named_params_come_from_params_over_input() -> None:
    result = await run(
        {"command": "select $name as name, $n + 1 as n", "params": {"n": 41}},
        input={"name": "ann", "n": 0, "unused": 1},
    )
    assert result["rows"] == [{"name": "ann", "n": 42}]


async def test_columns_keep_order_and_rows_may_be_lists() -> None:
    result = await run({"command": "select 2 as b, 1 as a"})
    assert result["columns"] == ["b", "a"] and list(result["rows"][0]) == ["b", "a"]
    assert await run({"command": "select 2 as b, 1 as a", "as_objects": False}) == {
        "columns": ["b", "a"],
        "rows": [[2, 1]],
        "row_count": 1,
    }


async def test_insert_returning_is_a_query() -> None:
    result = await run({"command": "create table t(a int); insert into t values (7) returning a"})
    assert result == {"columns": ["a"], "rows": [{"a": 7}], "row_count": 1}


async def test_values_become_json() -> None:
    result = await run(
        {
            "command": "select 1.50::decimal(10,2) as d, date '2020-01-02' as day, timestamp '2020-01-02 03:04:05' as ts, "
            "interval 90 second as iv, '00000000-0000-0000-0000-000000000001'::uuid as u, 'ab'::blob as bin, "
            "[1, 2] as l, {'k': 1} as st, map([1], ['v']) as m, 'inf'::double as big"
        }
    )
    assert result["rows"] == [
        {
            "d": 1.5,
            "day": "2020-01-02",
            "ts": "2020-01-02T03:04:05",
            "iv": 90.0,
            "u": "00000000-0000-0000-0000-000000000001",
            "bin": base64.b64encode(b"ab").decode(),
            "l": [1, 2],
            "st": {"k": 1},
            "m": {"1": "v"},
            "big": "Infinity",
        }
    ]


async def test_base64_command() -> None:
    encoded = base64.b64encode(b"select 'b64; ok' as s").decode()
    assert (await run({"command_b64": encoded}))["rows"] == [{"s": "b64; ok"}]
    listed: list[JSON] = [
        base64.b64encode(b"create table t(a int)").decode(),
        base64.b64encode(b"select count(*) as c from t").decode(),
    ]
    assert (await run({"commands_b64": listed}))["rows"] == [{"c": 0}]


async def test_config_errors() -> None:
    with pytest.raises(ToolConfigError, match="one SQL field"):
        await run({"command": "select 1", "query": "select 2"})
    with pytest.raises(ToolConfigError, match="base64"):
        await run({"command_b64": "not base64!"})
    with pytest.raises(ToolConfigError, match="needs SQL"):
        await run({"command": ""})
    with pytest.raises(ToolConfigError, match="list of strings"):
        await run({"commands": ["select 1", 2]})


async def test_syntax_error_and_missing_parameter_are_duckdb_errors() -> None:
    err = await failure({"command": "selec 1"})
    assert err.error_kind == "duckdb" and err.details == {"duckdb": {"error_type": "ParserException"}}
    err = await failure({"command": "select $missing"})
    assert err.error_kind == "duckdb" and "missing" in err.message


async def test_failed_statement_keeps_earlier_statements_in_a_file(tmp_path: Path) -> None:
    db = str(tmp_path / "y.duckdb")
    await failure(
        {"db_path": db, "command": "create table t(a int); insert into t values (1); select * from nope"}
    )
    assert (await run({"db_path": db, "command": "select count(*) as c from t"}))["rows"] == [{"c": 1}]


async def test_timeout_interrupts_the_query() -> None:
    err = await failure(
        {"command": "select sum(hash(i)) from range(1000000000000) t(i)", "timeout_seconds": 0.2}
    )
    assert err.error_kind == "timeout" and err.retryable is True
