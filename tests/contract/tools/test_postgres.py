"""The postgres tool against a real PostgreSQL (the ``pg_database`` fixture; DECISIONS 8, 11, 14)."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from noetl.dsl.model import JSON
from noetl.errors import ToolConfigError, ToolError
from noetl.tools.base import Call
from noetl.tools.postgres import TOOL

SECRET = "pw-Secret-0042"


@pytest.fixture(scope="module")
def credential(pg_database: str) -> dict[str, Any]:
    """The fixture's URL as a stored credential: ``{type: postgres, data: {db_host, ...}}``."""
    parts = conninfo_to_dict(pg_database)
    data = {
        "db_host": parts.get("host", "127.0.0.1"),
        "db_port": parts.get("port", "5432"),
        "db_user": parts.get("user", "postgres"),
        "db_password": parts.get("password", ""),
        "db_name": parts["dbname"],
    }
    return {"type": "postgres", "data": data}


def call(
    config: Mapping[str, JSON],
    credential: Mapping[str, Any] | None,
    *,
    input: Mapping[str, JSON] | None = None,
    timeout: float | None = None,
) -> Call:
    return Call("e1", "sql", "sql", "postgres", config, input or {}, credential, timeout)


async def run(config: Mapping[str, JSON], credential: Mapping[str, Any] | None, **kw: Any) -> Any:
    return await TOOL.run(call(config, credential, **kw))


async def failure(config: Mapping[str, JSON], credential: Mapping[str, Any] | None, **kw: Any) -> ToolError:
    with pytest.raises(ToolError) as caught:
        await TOOL.run(call(config, credential, **kw))
    return caught.value


async def test_create_insert_with_params_then_select_objects(credential: dict[str, Any]) -> None:
    name = "O'Brien; drop table people"
    created = await run(
        {
            "command": "create table people(id serial primary key, name text); "
            "insert into people(name) values (%s), (%s)",
            "params": [name, "ann"],
        },
        credential,
    )
    assert created == {"row_count": 2}
    result = await run({"command": "select id, name from people order by id"}, credential)
    assert result == {
        "columns": ["id", "name"],
        "rows": [{"id": 1, "name": name}, {"id": 2, "name": "ann"}],
        "row_count": 2,
    }
    lists = await run({"query": "select id, name from people order by id", "as_objects": False}, credential)
    assert lists["rows"] == [[1, name], [2, "ann"]]


async def test_named_params_from_params_over_input(credential: dict[str, Any]) -> None:
    result = await run(
        {"command": "select %(name)s::text as name, %(n)s::int + 1 as n", "params": {"n": 41}},
        credential,
        input={"name": "x'y", "n": 0},
    )
    assert result["rows"] == [{"name": "x'y", "n": 42}]


async def test_literal_percent_without_params(credential: dict[str, Any]) -> None:
    result = await run({"command": "select 'a%' as p, 'b%s' as q"}, credential, input={"unused": 1})
    assert result["rows"] == [{"p": "a%", "q": "b%s"}]


async def test_several_statements_give_the_last_result(credential: dict[str, Any]) -> None:
    result = await run(
        {
            "command": "create table multi(a int); insert into multi values (1), (2); update multi set a = a * 10; select sum(a) as s from multi"
        },
        credential,
    )
    assert result == {"columns": ["s"], "rows": [{"s": 30}], "row_count": 1}
    assert await run(
        {"command": "delete from multi where a > 10; select 1 as one; delete from multi"}, credential
    ) == {"row_count": 1}


async def test_several_statements_are_one_transaction(credential: dict[str, Any]) -> None:
    await run({"command": "create table atomic(a int)"}, credential)
    err = await failure({"command": "insert into atomic values (1); select * from nope"}, credential)
    assert err.details == {"pg": {"sqlstate": "42P01", "code": "42P01"}}
    assert (await run({"command": "select count(*) as c from atomic"}, credential))["rows"] == [{"c": 0}]


async def test_sql_error_carries_sqlstate(credential: dict[str, Any]) -> None:
    err = await failure({"command": "select * from missing_table"}, credential)
    assert err.error_kind == "postgres" and err.retryable is False and err.step == "sql"
    assert 'relation "missing_table" does not exist' in err.message and "42P01" in err.message
    assert err.details == {"pg": {"sqlstate": "42P01", "code": "42P01"}}


async def test_serialization_class_is_retryable(credential: dict[str, Any]) -> None:
    err = await failure(
        {"command": "do $$ begin raise exception 'conflict' using errcode = '40001'; end $$"}, credential
    )
    assert err.retryable is True and err.details["pg"]["sqlstate"] == "40001"  # type: ignore[index]


async def test_values_become_json(credential: dict[str, Any]) -> None:
    result = await run(
        {
            "command": "select 1.50::numeric as d, date '2020-01-02' as day, timestamp '2020-01-02 03:04:05' as ts, "
            "interval '90 seconds' as iv, '00000000-0000-0000-0000-000000000001'::uuid as u, "
            "'\\x6162'::bytea as bin, '{\"k\": [1, null]}'::jsonb as j, array[1, 2] as arr, "
            "'infinity'::float8 as big"
        },
        credential,
    )
    assert result["rows"] == [
        {
            "d": 1.5,
            "day": "2020-01-02",
            "ts": "2020-01-02T03:04:05",
            "iv": 90.0,
            "u": "00000000-0000-0000-0000-000000000001",
            "bin": "YWI=",
            "j": {"k": [1, None]},
            "arr": [1, 2],
            "big": "Infinity",
        }
    ]


async def test_map_params_are_sent_as_jsonb(credential: dict[str, Any]) -> None:
    result = await run(
        {"command": "select %s as doc, %s::int[] as arr", "params": [{"a": [1, {"b": 2}]}, [3, 4]]},
        credential,
    )
    assert result["rows"] == [{"doc": {"a": [1, {"b": 2}]}, "arr": [3, 4]}]


async def test_schema_sets_search_path(credential: dict[str, Any]) -> None:
    await run(
        {
            "command": "create schema other; create table other.only_here(a int); insert into other.only_here values (9)"
        },
        credential,
    )
    assert (await run({"command": "select a from only_here", "schema": "other"}, credential))["rows"] == [
        {"a": 9}
    ]
    err = await failure({"command": "select a from only_here"}, credential)
    assert err.details["pg"]["sqlstate"] == "42P01"  # type: ignore[index]


async def test_connection_string_field_and_dsn_credential(pg_database: str) -> None:
    assert (await run({"command": "select 1 as one", "connection_string": pg_database}, None))["rows"] == [
        {"one": 1}
    ]
    assert (await run({"command": "select 2 as two", "dsn": pg_database}, None))["rows"] == [{"two": 2}]
    dsn_credential = {"type": "postgres", "data": {"dsn": pg_database}}
    assert (await run({"command": "select 3 as three"}, dsn_credential))["rows"] == [{"three": 3}]


async def test_no_connection_is_config_error_naming_auth() -> None:
    with pytest.raises(ToolConfigError, match="auth") as caught:
        await run({"command": "select 1"}, None)
    assert caught.value.field == "auth"


async def test_wrong_credential_type_is_config_error() -> None:
    with pytest.raises(ToolConfigError, match="bearer"):
        await run({"command": "select 1"}, {"type": "bearer", "data": {"token": SECRET}})


async def test_unreachable_server_is_retryable_and_hides_the_password() -> None:
    with socket.socket() as closed:  # bound but not listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        data = {
            "db_host": "127.0.0.1",
            "db_port": port,
            "db_user": "u",
            "db_password": SECRET,
            "db_name": "d",
        }
        err = await failure({"command": "select 1"}, {"type": "postgres", "data": data})
        assert err.error_kind == "postgres" and err.retryable is True
        assert SECRET not in err.message
        dsn = make_conninfo(host="127.0.0.1", port=port, user="u", password=SECRET, dbname="d")
        err = await failure({"command": "select 1", "connection_string": dsn}, None)
        assert err.retryable is True and SECRET not in err.message


async def test_malformed_connection_string_hides_it() -> None:
    with pytest.raises(ToolConfigError) as caught:
        await run({"command": "select 1", "connection_string": f"host=x password={SECRET} nonsense"}, None)
    assert SECRET not in str(caught.value) and caught.value.field == "auth"


async def test_timeout(credential: dict[str, Any]) -> None:
    err = await failure({"command": "select pg_sleep(30)"}, credential, timeout=0.3)
    assert err.error_kind == "timeout" and err.retryable is True
