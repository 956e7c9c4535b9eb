"""The ``clickhouse`` tool: queries, commands and inserts over ClickHouse's HTTP interface (httpx).

Operations:

* ``query``: a ``SELECT``; rows stream back as ``JSONEachRow`` and at most ``limit`` of them
  (default 1000) are kept: ``{columns, rows, row_count, truncated}``;
* ``command``: a statement without a result (DDL, ``INSERT ... SELECT``, ``TRUNCATE``): ``{ok}``;
* ``insert``: ``rows`` (a list of maps) or a local ``file`` (JSON lines, or CSV with a header; under
  the file roots) into ``table``, sent as ``INSERT ... FORMAT JSONEachRow``/``CSVWithNames`` in
  chunks of ``batch`` rows (a file is streamed, never held in memory): ``{table, rows}``.

The SQL is what the server speaks; nothing newer than ClickHouse 18.16 is assumed by the tool (no
``{x:Type}`` parameters: render values with templates, or insert them as rows).

The credential (``auth``, type ``clickhouse``) holds ``url`` (``http://host:8123``) or
``host``/``port``, and ``user``, ``password``, ``database``; it is sent with HTTP basic auth.
Errors name the operation, the step and ClickHouse's error code and text; an unreachable server is
named by host and port, refused credentials by the credential's name.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from noetl.dsl.model import JSON
from noetl.errors import ToolConfigError, ToolError
from noetl.tools import fields
from noetl.tools.base import Call
from noetl.tools.file_tool import ROOTS_KEY, confine
from noetl.tools.spec import Config, model_fields, parse_config

_CODE = re.compile(r"Code:\s*(\d+)")
_AUTH_CODES = frozenset({"192", "193", "194", "516"})
_MISSING_CODES = frozenset({"60", "81"})
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


class ClickhouseConfig(Config):
    """The ``clickhouse`` task's fields."""

    operation: Literal["query", "command", "insert"] = "query"
    query: str | None = None
    table: str | None = None
    rows: list[dict[str, Any]] | None = None
    file: str | None = None
    batch: int = 10_000
    limit: int = 1000
    database: str | None = None


class ClickhouseTool:
    """Runs queries, commands and inserts on ClickHouse over HTTP."""

    kind = "clickhouse"
    config_model = ClickhouseConfig
    config_fields, required_fields = model_fields(ClickhouseConfig)
    description = (
        "ClickHouse over its HTTP interface: query (JSONEachRow, at most `limit` rows kept), command, "
        "insert rows or a local JSONL/CSV file in batches. Credential: url or host/port, user, "
        "password, database."
    )
    credential_types = ("clickhouse",)
    result = {
        "type": "object",
        "description": "query: {columns, rows, row_count, truncated}; command: {ok}; insert: {table, rows}",
    }
    example = (
        "tool:\n  kind: clickhouse\n  auth: my_clickhouse\n  operation: query\n"
        "  query: SELECT region, count() AS n FROM events GROUP BY region\n"
    )

    async def run(self, call: Call) -> JSON:
        import httpx

        config = parse_config(ClickhouseConfig, call)
        server = _Server.of(call, config)
        seconds = fields.timeout(call) or 300.0
        timeout = httpx.Timeout(seconds, connect=min(seconds, 10.0))
        async with httpx.AsyncClient(timeout=timeout, auth=server.auth) as client:
            try:
                if config.operation == "query":
                    return await _query(client, server, config, call)
                if config.operation == "command":
                    await _post(
                        client, server, _need(config.query, "query", config, call), None, config, call
                    )
                    return {"ok": True}
                return await _insert(client, server, config, call)
            except httpx.TransportError as exc:
                raise ToolError(
                    f"clickhouse {config.operation} (step '{call.step}'): cannot reach {server.where}: "
                    f"{type(exc).__name__}",
                    error_kind="timeout" if isinstance(exc, httpx.TimeoutException) else "clickhouse",
                    retryable=True,
                    step=call.step,
                ) from None


class _Server:
    def __init__(self, url: str, auth: tuple[str, str] | None, database: str | None, name: str) -> None:
        self.url, self.auth, self.database, self.name = url, auth, database, name
        parts = urlsplit(url)
        self.where = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 8123)}"

    @classmethod
    def of(cls, call: Call, config: ClickhouseConfig) -> _Server:
        credential = call.credential or {}
        data = credential.get("data")
        data = data if isinstance(data, Mapping) else {}
        url = data.get("url") or (
            f"http://{data['host']}:{data.get('port', 8123)}" if data.get("host") else None
        )
        if not url:
            raise ToolConfigError(
                f"clickhouse {config.operation}: give 'auth' naming a clickhouse credential with 'url' "
                "(or 'host' and 'port')",
                step=call.step,
                field="auth",
            )
        user = data.get("user") or data.get("username")
        auth = (str(user), str(data.get("password") or "")) if user else None
        database = config.database or data.get("database")
        return cls(str(url).rstrip("/"), auth, database, str(credential.get("name", "(unnamed)")))

    def params(self, query: str | None) -> dict[str, str]:
        found = {"database": self.database} if self.database else {}
        if query is not None:
            found["query"] = query
        return found


def _need(value: str | None, name: str, config: ClickhouseConfig, call: Call) -> str:
    if not value:
        raise ToolConfigError(f"clickhouse {config.operation} needs '{name}'", step=call.step, field=name)
    return value


async def _query(client: Any, server: _Server, config: ClickhouseConfig, call: Call) -> JSON:
    sql = _need(config.query, "query", config, call).strip().rstrip(";")
    rows: list[JSON] = []
    truncated = False
    request = client.build_request(
        "POST", server.url, params=server.params(None), content=f"{sql} FORMAT JSONEachRow".encode()
    )
    response = await client.send(request, stream=True)
    try:
        if response.status_code != 200:
            await response.aread()
            raise _failure(response.text, config, call, server)
        async for line in response.aiter_lines():
            if not line.strip():
                continue
            if len(rows) >= config.limit:
                truncated = True
                break
            rows.append(json.loads(line))
    finally:
        await response.aclose()
    columns: list[JSON] = list(rows[0]) if rows and isinstance(rows[0], dict) else []
    return {"columns": columns, "rows": rows, "row_count": len(rows), "truncated": truncated}


async def _post(
    client: Any, server: _Server, query: str, body: Any, config: ClickhouseConfig, call: Call
) -> None:
    if body is None:
        response = await client.post(server.url, params=server.params(None), content=query.encode())
    else:
        response = await client.post(server.url, params=server.params(query), content=body)
    if response.status_code != 200:
        raise _failure(response.text, config, call, server)


async def _insert(client: Any, server: _Server, config: ClickhouseConfig, call: Call) -> JSON:
    table = _need(config.table, "table", config, call)
    if not _TABLE.match(table):
        raise ToolConfigError(
            f"clickhouse insert: '{table}' is not a table name", step=call.step, field="table"
        )
    if config.file:
        path = confine(tuple(call.services.extras.get(ROOTS_KEY) or ()), config.file, call)
        csv = path.suffix.lower() == ".csv"
        fmt = "CSVWithNames" if csv else "JSONEachRow"
        count = 0
        async for chunk, lines in _file_chunks(path, config.batch, header=csv):
            await _post(client, server, f"INSERT INTO {table} FORMAT {fmt}", chunk, config, call)
            count += lines
        return {"table": table, "rows": count}
    if not config.rows:
        raise ToolConfigError("clickhouse insert needs 'rows' or 'file'", step=call.step, field="rows")
    step = max(config.batch, 1)
    for start in range(0, len(config.rows), step):
        body = "".join(json.dumps(row) + "\n" for row in config.rows[start : start + step]).encode()
        await _post(client, server, f"INSERT INTO {table} FORMAT JSONEachRow", body, config, call)
    return {"table": table, "rows": len(config.rows)}


async def _file_chunks(path: Path, batch: int, *, header: bool) -> AsyncIterator[tuple[bytes, int]]:
    """The file in chunks of ``batch`` lines (each CSV chunk starts with the header line)."""
    with path.open("rb") as file:
        first = file.readline() if header else b""
        lines: list[bytes] = []
        for line in file:
            if not line.strip():
                continue
            lines.append(line if line.endswith(b"\n") else line + b"\n")
            if len(lines) >= max(batch, 1):
                yield first + b"".join(lines), len(lines)
                lines = []
        if lines:
            yield first + b"".join(lines), len(lines)


def _failure(text: str, config: ClickhouseConfig, call: Call, server: _Server) -> ToolError:
    match = _CODE.search(text)
    code = match.group(1) if match else "?"
    detail = text.strip().splitlines()[0] if text.strip() else "(no message)"
    detail = re.sub(r"^Code:\s*\d+,\s*(e\.displayText\(\)\s*=\s*)?", "", detail)
    what = f"clickhouse {config.operation} (step '{call.step}')"
    if code in _AUTH_CODES:
        return ToolError(
            f"{what}: credential '{server.name}' was refused by {server.where} (code {code})",
            error_kind="auth",
            step=call.step,
            field="auth",
            details={"clickhouse": {"code": int(code)}},
        )
    return ToolError(
        f"{what}: code {code}: {detail[:500]}",
        error_kind="not_found" if code in _MISSING_CODES else "clickhouse",
        step=call.step,
        details={"clickhouse": {"code": int(code) if code.isdigit() else None}},
    )


TOOL = ClickhouseTool()
