"""A small ClickHouse client over its HTTP interface (the one every ClickHouse version speaks).

Statements go as the POST body; rows are inserted as ``JSONEachRow``; results are read as
``JSONEachRow`` lines. The schema of the exported events ships beside this module
(``clickhouse.sql``; ``deploy/clickhouse/schema.sql`` is the same file for operators) and is written
for ClickHouse 18.16 and later: no DateTime64, Map, JSON type or query parameters.

Failures become :class:`~noetl.errors.SinkError` naming the server's address and the operation, never
the password (sent as the ``X-ClickHouse-Key`` header, not in the URL).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from noetl.errors import SinkError

SCHEMA_FILE = "clickhouse.sql"
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def schema_statements(database: str) -> list[str]:
    """The statements of the shipped schema, for ``database``."""
    if not NAME.match(database):
        raise SinkError(f"ClickHouse database name {database!r} is not a plain identifier")
    text = resources.files("noetl.telemetry").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip().replace("noetl.", f"{database}.") for s in body.split(";") if s.strip()]


class ClickHouse:
    """One ClickHouse server: ``url`` like ``http://user:password@127.0.0.1:8123``."""

    def __init__(self, url: str, *, database: str = "noetl", timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SinkError(f"ClickHouse URL must be http(s)://host:port, got {_safe(url)!r}")
        headers = {"X-ClickHouse-User": parts.username or "default"}
        if parts.password:
            headers["X-ClickHouse-Key"] = parts.password
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        self.address = urlunsplit((parts.scheme, netloc, "/", "", ""))
        self.database = database
        self._client = httpx.AsyncClient(base_url=self.address, headers=headers, timeout=timeout)

    async def close(self) -> None:
        await self._client.aclose()

    async def execute(self, statement: str, *, what: str = "statement") -> str:
        """Run one statement; its raw response text."""
        return await self._post(statement.encode(), {}, what)

    async def insert(self, table: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert ``rows`` into ``table`` as JSONEachRow; how many were sent."""
        lines = [json.dumps(row, separators=(",", ":"), default=str) for row in rows]
        if not lines:
            return 0
        query = f"INSERT INTO {self.database}.{table} FORMAT JSONEachRow"
        await self._post(("\n".join(lines) + "\n").encode(), {"query": query}, f"insert into {table}")
        return len(lines)

    async def rows(self, query: str) -> list[dict[str, Any]]:
        """The rows of a SELECT (``FORMAT JSONEachRow`` is added)."""
        text = await self._post(f"{query} FORMAT JSONEachRow".encode(), {}, "query")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    async def ensure_schema(self) -> None:
        """Create the database, the events table and its views if they are missing."""
        await self.execute(f"CREATE DATABASE IF NOT EXISTS {self.database}", what="create database")
        for statement in schema_statements(self.database):
            await self.execute(statement, what="create schema")

    async def _post(self, body: bytes, params: dict[str, str], what: str) -> str:
        try:
            response = await self._client.post("/", content=body, params=params)
        except httpx.HTTPError as exc:
            raise SinkError(f"ClickHouse at {self.address}: {what} failed: {type(exc).__name__}") from None
        if response.status_code != 200:
            first = response.text.strip().splitlines()[0][:300] if response.text.strip() else ""
            raise SinkError(f"ClickHouse at {self.address}: {what} failed ({response.status_code}): {first}")
        return response.text


def _safe(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        port = f":{parts.port}" if parts.port else ""
        netloc = f"{parts.username or ''}:***@{parts.hostname or ''}{port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return url
