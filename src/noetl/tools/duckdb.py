"""The ``duckdb`` tool: runs SQL in DuckDB (REFERENCE §4.4, DECISIONS 8, 11).

Fields:

* the SQL, in exactly one of ``command`` / ``commands`` / ``query`` / ``queries`` / ``cmd`` /
  ``cmds`` (a string, or a list of strings run in order) or, base64-encoded, ``command_b64`` /
  ``commands_b64`` / ``query_b64``. Each string may hold several statements; they run in order,
  each in its own transaction unless the SQL says ``BEGIN``/``COMMIT``, and the result is that of
  the last one: ``{columns, rows, row_count}`` for a query (also ``INSERT ... RETURNING``), else
  ``{row_count}`` (see :mod:`noetl.tools.sqlresult`).
* ``db_path`` (alias ``database``): the database file; default ``:memory:``, a fresh database.
* ``params``: a list for positional placeholders (``?``, ``$1``), handed out statement by
  statement in order, or a map for ``$name`` placeholders; named placeholders also find the
  task's ``input`` keys.
* ``as_objects`` (default true): rows as maps; false gives lists in column order.

DuckDB is synchronous, so the call runs in a worker thread; the connection is opened and closed
within the call (no file lock outlives it), and interrupted on timeout or cancellation. Errors
are ``duckdb`` errors with ``details["duckdb"] = {"error_type": <DuckDB exception name>}``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from noetl.dsl.model import JSON
from noetl.errors import ToolConfigError, ToolError
from noetl.tools import fields, sqlresult
from noetl.tools.base import Call

if TYPE_CHECKING:
    import duckdb

_PLAIN_SQL_FIELDS = ("command", "commands", "query", "queries", "cmd", "cmds")
_BASE64_SQL_FIELDS = ("command_b64", "commands_b64", "query_b64")
_QUERY_TYPES = frozenset({"SELECT", "PRAGMA", "EXPLAIN", "CALL", "RELATION"})
_STATUS_COLUMNS: tuple[list[str], ...] = (["Count"], ["Success"])
"""What DuckDB returns for statements that produce no rows of their own."""


class DuckdbTool:
    """Runs the task's SQL and returns the last statement's result."""

    kind = "duckdb"
    config_fields: Mapping[str, tuple[type, ...]] = {
        **{name: (str, list) for name in (*_PLAIN_SQL_FIELDS, *_BASE64_SQL_FIELDS)},
        "db_path": (str, type(None)),
        "database": (str, type(None)),
        "params": (list, dict, type(None)),
        "as_objects": (bool,),
        "script": (dict,),  # loaded into 'command' by the runner (noetl.runtime.scripts)
        **fields.TIMEOUTS,
    }
    required_fields: tuple[tuple[str, ...], ...] = ((*_PLAIN_SQL_FIELDS, *_BASE64_SQL_FIELDS, "script"),)

    async def run(self, call: Call) -> JSON:
        params = _params(call)
        as_objects = fields.flag(call.config.get("as_objects"), default=True)
        session = _Session(_database(call), _scripts(call), params, call.input, as_objects=as_objects)
        limit = fields.timeout(call)
        work = asyncio.ensure_future(asyncio.to_thread(session.run))
        try:
            done, _ = await asyncio.wait({work}, timeout=limit)
        except asyncio.CancelledError:
            await session.stop(work)
            raise
        if not done:
            await session.stop(work)
            raise ToolError(
                f"duckdb call did not finish within {limit} s and was interrupted",
                error_kind="timeout",
                retryable=True,
                step=call.step,
            )
        return _outcome(work, call)


def _database(call: Call) -> str:
    path = call.config.get("db_path") or call.config.get("database") or ":memory:"
    return str(path)


def _scripts(call: Call) -> list[str]:
    """The SQL strings to run, from the one SQL field the task has."""
    given = [name for name in (*_PLAIN_SQL_FIELDS, *_BASE64_SQL_FIELDS) if call.config.get(name)]
    if len(given) != 1:
        wanted = "needs SQL in 'command'" if not given else f"takes one SQL field, got {given}"
        raise ToolConfigError(
            f"a duckdb task {wanted}", step=call.step, field=given[-1] if given else "command"
        )
    name = given[0]
    value = call.config[name]
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, str) for item in items):
        raise ToolConfigError(
            f"field '{name}' of a duckdb task must be a string or a list of strings",
            step=call.step,
            field=name,
        )
    texts = [str(item) for item in items]
    return [_decoded(text, name, call) for text in texts] if name in _BASE64_SQL_FIELDS else texts


def _decoded(text: str, name: str, call: Call) -> str:
    try:
        return base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise ToolConfigError(
            f"field '{name}' of a duckdb task is not base64-encoded UTF-8 text", step=call.step, field=name
        ) from None


def _params(call: Call) -> JSON:
    params = call.config.get("params")
    if params is not None and not isinstance(params, list | dict):
        raise ToolConfigError(
            "field 'params' of a duckdb task must be a list or a map", step=call.step, field="params"
        )
    return params


def _outcome(work: asyncio.Future[JSON], call: Call) -> JSON:
    import duckdb

    try:
        return work.result()
    except duckdb.Error as exc:
        raise ToolError(
            str(exc).strip(),
            error_kind="duckdb",
            retryable=isinstance(exc, duckdb.TransactionException),
            details={"duckdb": {"error_type": type(exc).__name__}},
            step=call.step,
        ) from None


class _Session:
    """One call's connection, run in a worker thread and interruptible from the event loop."""

    def __init__(
        self, database: str, scripts: list[str], params: JSON, input: Mapping[str, JSON], *, as_objects: bool
    ) -> None:
        self.database = database
        self.scripts = scripts
        self.as_objects = as_objects
        self.named: dict[str, JSON] = {**input, **(params if isinstance(params, dict) else {})}
        self.positional: list[JSON] = list(params) if isinstance(params, list) else []
        self.connection: duckdb.DuckDBPyConnection | None = None
        self.stopped = threading.Event()

    def run(self) -> JSON:
        import duckdb

        connection = duckdb.connect(self.database)
        self.connection = connection
        try:
            result: JSON = sqlresult.statement(0)
            for script in self.scripts:
                for statement in connection.extract_statements(script):
                    if self.stopped.is_set():
                        raise duckdb.InterruptException("INTERRUPT Error: interrupted")
                    result = self._execute(connection, statement)
            return result
        finally:
            self.connection = None
            connection.close()

    def _execute(self, connection: duckdb.DuckDBPyConnection, statement: duckdb.Statement) -> JSON:
        cursor = connection.execute(statement.query, self._bound(statement.named_parameters))
        if cursor.description is None:
            return sqlresult.statement(0)
        columns = [column[0] for column in cursor.description]
        if statement.type.name in _QUERY_TYPES or columns not in _STATUS_COLUMNS:
            return sqlresult.query(columns, cursor.fetchall(), as_objects=self.as_objects)
        rows = cursor.fetchall()
        return sqlresult.statement(int(rows[0][0]) if columns == ["Count"] and rows else 0)

    def _bound(self, names: Sequence[str] | set[str]) -> list[JSON] | dict[str, JSON] | None:
        """This statement's parameters: the next positional values, or the named ones it uses."""
        if not names:
            return None
        if all(name.isdigit() for name in names):
            count = max(int(name) for name in names)
            taken, self.positional = self.positional[:count], self.positional[count:]
            return taken
        return {name: self.named[name] for name in names if name in self.named}

    async def stop(self, work: asyncio.Future[JSON]) -> None:
        """Interrupt the running statement and wait until the connection is closed."""
        self.stopped.set()
        connection = self.connection
        if connection is not None:
            with contextlib.suppress(Exception):  # it may have closed in the meantime
                connection.interrupt()
        await asyncio.gather(work, return_exceptions=True)


TOOL = DuckdbTool()
