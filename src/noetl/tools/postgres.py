"""The ``postgres`` tool: runs SQL on PostgreSQL with psycopg 3 (REFERENCE §4.4, DECISIONS 8, 11).

Fields:

* ``command`` (alias ``query``): one statement or several separated by ``;``. Several statements
  run in one transaction (PostgreSQL's implicit transaction for a multi-statement query) and the
  result is that of the last one: ``{columns, rows, row_count}`` when it returns rows (rows as
  maps, or lists with ``as_objects: false``), else ``{row_count}`` (see :mod:`noetl.tools.sqlresult`).
* ``params``: bind parameters, a list for ``%s`` placeholders or a map for ``%(name)s``; named
  placeholders also find the task's ``input`` keys. With parameters, a literal ``%`` in the SQL is
  written ``%%``. Parameters are bound client-side by psycopg (quoted by the library, never spliced
  as raw text), which is what allows parameters in a multi-statement command.
* ``schema``: sets ``search_path`` for the call.
* ``pool`` (upstream's ``{name, min_size, max_size, timeout, max_waiting, ...}``): bounds the
  connections the tasks sharing the pool hold at once (see :mod:`noetl.tools.pgpool`).
* The connection: the ``auth`` credential (``type: postgres``, data ``db_host``, ``db_port``,
  ``db_user``, ``db_password``, ``db_name``, or ``dsn`` / ``connection_string``), else the
  ``connection_string`` (alias ``dsn``) field. One connection per call.

Errors are ``postgres`` errors with ``details["pg"] = {sqlstate, code}``; connection failures and
SQLSTATE classes 08, 40, 53 and 57 are retryable. Messages never include the connection string
or password.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from noetl.dsl.model import JSON
from noetl.errors import ToolConfigError, ToolError
from noetl.tools import fields, pgpool, sqlresult
from noetl.tools.base import Call

if TYPE_CHECKING:
    import psycopg

_NAMED_PLACEHOLDER = re.compile(r"%\(\w+\)s")
_RETRYABLE_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57"})
_CREDENTIAL_TYPES = frozenset({"postgres", "postgresql", "pg"})
_CONNECT_TIMEOUT = "10"
_CONNINFO_KEYS = {
    "host": ("db_host", "host"),
    "port": ("db_port", "port"),
    "user": ("db_user", "user", "username"),
    "password": ("db_password", "password"),
    "dbname": ("db_name", "dbname", "database"),
}


@dataclass(frozen=True, slots=True)
class _Connection:
    """A libpq connection string and the secrets that must not appear in messages."""

    conninfo: str
    secrets: tuple[str, ...]

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


class PostgresTool:
    """Runs ``command`` and returns the last statement's result."""

    kind = "postgres"
    config_fields: Mapping[str, tuple[type, ...]] = {
        "command": (str,),
        "query": (str,),
        "params": (list, dict, type(None)),
        "connection_string": (str,),
        "dsn": (str,),
        "schema": (str, type(None)),
        "as_objects": (bool,),
        "pool": (dict, type(None)),
        "script": (dict,),
        **fields.TIMEOUTS,
    }
    required_fields: tuple[tuple[str, ...], ...] = (("command", "query", "script"),)

    async def run(self, call: Call) -> JSON:
        import psycopg

        sql = _sql(call)
        connection = _connection(call)
        params = _params(call, sql)
        pool = pgpool.spec(call)
        limit = fields.timeout(call)
        try:
            async with asyncio.timeout(limit), pgpool.slot(pool, connection.conninfo, call):
                return await _execute(connection.conninfo, sql, params, call)
        except TimeoutError:
            raise ToolError(
                f"postgres call did not finish within {limit} s",
                error_kind="timeout",
                retryable=True,
                step=call.step,
            ) from None
        except psycopg.Error as exc:
            raise _error(exc, connection, call) from None


def _sql(call: Call) -> str:
    config = call.config
    if "command" in config and "query" in config:
        raise ToolConfigError(
            "a postgres task takes 'command' or 'query', not both", step=call.step, field="query"
        )
    sql = config.get("command", config.get("query"))
    if not isinstance(sql, str) or not sql.strip():
        raise ToolConfigError("a postgres task needs SQL in 'command'", step=call.step, field="command")
    return sql


def _connection(call: Call) -> _Connection:
    """The connection string, from the credential when there is one, else from the task."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    base, secrets = _credential_conninfo(call) if call.credential is not None else _field_conninfo(call)
    try:
        options = conninfo_to_dict(base)
        password = options.get("password")
        conninfo = make_conninfo(
            base, **({} if "connect_timeout" in options else {"connect_timeout": _CONNECT_TIMEOUT})
        )
    except psycopg.Error as exc:  # its message may quote the connection string
        message = _Connection("", (*secrets, base)).scrub(str(exc))
        raise ToolConfigError(
            f"invalid postgres connection settings: {message}", step=call.step, field="auth"
        ) from None
    extra = (str(password), base) if password else (base,)
    return _Connection(conninfo, tuple(s for s in (*secrets, *extra) if s))


def _credential_conninfo(call: Call) -> tuple[str, tuple[str, ...]]:
    from psycopg.conninfo import make_conninfo

    credential = call.credential or {}
    kind = str(credential.get("type") or "postgres").lower()
    if kind not in _CREDENTIAL_TYPES:
        raise ToolConfigError(
            f"a credential of type '{kind}' cannot connect a postgres task; use type postgres",
            step=call.step,
            field="auth",
        )
    data: Mapping[str, Any] = credential.get("data") or {}
    dsn = data.get("dsn") or data.get("connection_string")
    if dsn:
        return str(dsn), (str(dsn),)
    options = {key: _first(data, names) for key, names in _CONNINFO_KEYS.items()}
    secret = options.get("password")
    return make_conninfo(**{k: v for k, v in options.items() if v is not None}), (secret,) if secret else ()


def _first(data: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = data.get(name)
        if value not in (None, ""):
            return str(value)
    return None


def _field_conninfo(call: Call) -> tuple[str, tuple[str, ...]]:
    value = call.config.get("connection_string") or call.config.get("dsn")
    if not isinstance(value, str) or not value:
        raise ToolConfigError(
            "a postgres task needs a connection: set 'auth' to a postgres credential "
            "(or give 'connection_string')",
            step=call.step,
            field="auth",
        )
    return value, (value,)


def _params(call: Call, sql: str) -> list[Any] | dict[str, Any] | None:
    """Bind parameters: the ``params`` list, or named values from ``params`` over ``input``."""
    params = call.config.get("params")
    if isinstance(params, list):
        return [_bindable(value) for value in params]
    if params is not None and not isinstance(params, dict):
        raise ToolConfigError(
            "field 'params' of a postgres task must be a list or a map", step=call.step, field="params"
        )
    if not params and not _NAMED_PLACEHOLDER.search(sql):
        return None  # no binding: a literal % in the SQL stays as written
    return {name: _bindable(value) for name, value in {**call.input, **(params or {})}.items()}


def _bindable(value: JSON) -> Any:
    """Maps (and lists holding maps) are sent as jsonb; other lists become arrays."""
    from psycopg.types.json import Jsonb

    if isinstance(value, dict) or (isinstance(value, list) and any(isinstance(v, dict) for v in value)):
        return Jsonb(value)
    return value


async def _execute(conninfo: str, sql: str, params: Any, call: Call) -> JSON:
    import psycopg

    connection = await psycopg.AsyncConnection.connect(
        conninfo, autocommit=True, cursor_factory=psycopg.AsyncClientCursor
    )
    async with connection:
        cursor = connection.cursor()
        schema = call.config.get("schema")
        if schema:
            await cursor.execute("SELECT set_config('search_path', %s, false)", [str(schema)])
        await cursor.execute(sql, params)
        while cursor.nextset():  # a multi-statement command: keep the last result
            pass
        if cursor.description is None:
            return sqlresult.statement(cursor.rowcount)
        columns = [column.name for column in cursor.description]
        rows = await cursor.fetchall()
        return sqlresult.query(
            columns, rows, as_objects=fields.flag(call.config.get("as_objects"), default=True)
        )


def _error(exc: psycopg.Error, connection: _Connection, call: Call) -> ToolError:
    import psycopg

    sqlstate = exc.sqlstate
    primary = exc.diag.message_primary if sqlstate else None
    message = connection.scrub(primary or str(exc).strip())
    if sqlstate:
        message = f"{message} (SQLSTATE {sqlstate})"
    retryable = (
        sqlstate[:2] in _RETRYABLE_SQLSTATE_CLASSES if sqlstate else isinstance(exc, psycopg.OperationalError)
    )
    return ToolError(
        message,
        error_kind="postgres",
        retryable=retryable,
        details={"pg": {"sqlstate": sqlstate, "code": sqlstate}},
        step=call.step,
    )


TOOL = PostgresTool()
