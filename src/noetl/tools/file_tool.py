"""The ``file`` tool: read, write, list, delete and test files on the local filesystem.

Every path is confined to the **file roots** that the runtime was started with
(``NOETL_FILE_ROOTS``, ``:``-separated; ``noetl run`` defaults to its working directory, a worker
has none unless configured). A relative path is taken from the first root. A path with ``..`` is
refused, and so is one that leads outside every root after symbolic links are resolved; the file
itself is opened without following a symbolic link, so a link swapped in after the check cannot
redirect the open.

Formats (``format``, default from the extension, else ``text``): ``text``, ``json``, ``csv`` and
``parquet``. CSV and Parquet are read and written through DuckDB: reads return at most ``limit``
rows (default 1000) plus the total ``row_count``; a write takes a list of row maps in ``data``.
Text and JSON reads refuse files larger than ``max_bytes`` (default 1 MiB): results stay small, and
a large file is left for a DuckDB step or a ``transfer`` to process where it lies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any, Literal

from noetl.dsl.model import JSON
from noetl.errors import ToolConfigError, ToolError
from noetl.tools.base import Call
from noetl.tools.spec import Config, model_fields, parse_config

ROOTS_KEY = "file_roots"
"""``Services.extras`` key holding the runtime's file roots (a tuple of directory paths)."""

Format = Literal["auto", "text", "json", "csv", "parquet"]
_EXTENSIONS = {".json": "json", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


class FileConfig(Config):
    """The ``file`` task's fields."""

    operation: Literal["read", "write", "list", "delete", "exists"]
    path: str
    format: Format = "auto"
    data: Any = None
    mode: Literal["overwrite", "create", "append"] = "overwrite"
    pattern: str = "*"
    recursive: bool = False
    limit: int = 1000
    max_bytes: int = 1_048_576
    encoding: str = "utf-8"


class FileTool:
    """Reads, writes, lists and deletes files under the configured file roots."""

    kind = "file"
    config_model = FileConfig
    config_fields, required_fields = model_fields(FileConfig)
    description = (
        "Local files confined to the configured roots (NOETL_FILE_ROOTS): read, write, list (glob), "
        "delete, exists; text, JSON, CSV and Parquet (CSV/Parquet through DuckDB)."
    )
    credential_types: tuple[str, ...] = ()
    result = {
        "type": "object",
        "description": "read: {path, format, text | data | columns+rows+row_count+truncated}; "
        "write: {path, format, bytes, rows?}; list: {path, files: [{path, size, modified}], count, "
        "truncated}; delete: {path, deleted}; exists: {path, exists, size?}",
    }
    example = (
        "tool:\n  kind: file\n  operation: write\n  path: out/orders.csv\n"
        "  data: [{id: 1, total: 9.5}, {id: 2, total: 12}]\n"
    )

    async def run(self, call: Call) -> JSON:
        config = parse_config(FileConfig, call)
        roots = tuple(call.services.extras.get(ROOTS_KEY) or ())
        target = confine(roots, config.path, call)
        if config.operation in ("write", "delete") and str(target) in {os.path.realpath(r) for r in roots}:
            raise _error(call, "path", f"'{config.path}' is a file root itself", kind="file_access")
        return await asyncio.to_thread(_OPERATIONS[config.operation], target, config, call)


def confine(roots: Sequence[str], path: str, call: Call) -> Path:
    """The real path of ``path`` if it lies under one of ``roots``; ToolError otherwise."""
    if not roots:
        raise ToolConfigError(
            "the file tool has no file roots here: set NOETL_FILE_ROOTS (':'-separated directories) "
            "where the step runs",
            step=call.step,
            field="path",
        )
    if not path or ".." in PurePath(path).parts:
        raise _error(call, "path", f"path '{path}' must not be empty or contain '..'", kind="file_access")
    candidate = Path(path) if os.path.isabs(path) else Path(roots[0], path)
    real = os.path.realpath(candidate)
    for root in roots:
        base = os.path.realpath(root)
        if real == base or real.startswith(base.rstrip(os.sep) + os.sep):
            return Path(real)
    raise _error(
        call,
        "path",
        f"path '{path}' is outside the file roots ({', '.join(roots)})",
        kind="file_access",
    )


def _format(config: FileConfig, target: Path) -> str:
    if config.format != "auto":
        return config.format
    return _EXTENSIONS.get(target.suffix.lower(), "text")


def _read(target: Path, config: FileConfig, call: Call) -> JSON:
    fmt = _format(config, target)
    if not target.is_file():
        raise _error(call, "path", f"file '{config.path}' does not exist", kind="not_found")
    if fmt in ("csv", "parquet"):
        return {"path": str(target), "format": fmt, **_read_table(target, fmt, config.limit, call)}
    size = target.stat().st_size
    if size > config.max_bytes:
        raise _error(
            call,
            "max_bytes",
            f"file '{config.path}' has {size} bytes, more than max_bytes={config.max_bytes}; "
            "read it with duckdb or move it with transfer instead",
        )
    text = _open_read(target, call).decode(config.encoding, errors="replace")
    if fmt == "json":
        try:
            return {"path": str(target), "format": fmt, "data": json.loads(text)}
        except json.JSONDecodeError as exc:
            raise _error(call, "path", f"file '{config.path}' is not JSON: {exc}") from None
    return {"path": str(target), "format": "text", "text": text, "bytes": size}


def _open_read(target: Path, call: Call) -> bytes:
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise _error(call, "path", f"cannot open '{target}': {exc.strerror}", kind="file_access") from None
    with os.fdopen(fd, "rb") as file:
        return file.read()


def _read_table(target: Path, fmt: str, limit: int, call: Call) -> dict[str, JSON]:
    import duckdb

    reader = "read_csv_auto" if fmt == "csv" else "read_parquet"
    con = duckdb.connect(":memory:")
    try:
        total = con.execute(f"SELECT count(*) FROM {reader}(?)", [str(target)]).fetchone()
        cursor = con.execute(f"SELECT * FROM {reader}(?) LIMIT ?", [str(target), max(limit, 0)])
        columns = [d[0] for d in cursor.description or ()]
        rows = [dict(zip(columns, map(_jsonable, row), strict=True)) for row in cursor.fetchall()]
    except duckdb.Error as exc:
        raise _error(call, "path", f"cannot read {fmt} file '{target.name}': {exc}") from None
    finally:
        con.close()
    count = int(total[0]) if total else 0
    return {
        "columns": list[JSON](columns),
        "rows": list[JSON](rows),
        "row_count": count,
        "truncated": count > len(rows),
    }


def _jsonable(value: object) -> JSON:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def _write(target: Path, config: FileConfig, call: Call) -> JSON:
    fmt = _format(config, target)
    if config.mode == "create" and target.exists():
        raise _error(call, "mode", f"file '{config.path}' exists and mode is 'create'")
    if target.is_symlink():
        raise _error(call, "path", f"'{config.path}' is a symbolic link", kind="file_access")
    target.parent.mkdir(parents=True, exist_ok=True)
    if fmt in ("csv", "parquet"):
        if config.mode == "append":
            raise _error(call, "mode", f"mode 'append' is not supported for {fmt} files")
        rows = _rows(config.data, call)
        _write_table(target, fmt, rows, call)
        return {"path": str(target), "format": fmt, "bytes": target.stat().st_size, "rows": len(rows)}
    if fmt == "json":
        payload = json.dumps(config.data, ensure_ascii=False).encode(config.encoding)
    elif isinstance(config.data, str):
        payload = config.data.encode(config.encoding)
    else:
        raise _error(call, "data", "a text write needs 'data' to be a string (use format: json for data)")
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW
    flags |= os.O_APPEND if config.mode == "append" else os.O_TRUNC
    try:
        fd = os.open(target, flags, 0o644)
    except OSError as exc:
        raise _error(call, "path", f"cannot write '{target}': {exc.strerror}", kind="file_access") from None
    with os.fdopen(fd, "wb") as file:
        file.write(payload)
    return {"path": str(target), "format": fmt, "bytes": target.stat().st_size}


def _rows(data: JSON, call: Call) -> list[Mapping[str, JSON]]:
    if not isinstance(data, list) or not data or not all(isinstance(r, dict) for r in data):
        raise _error(call, "data", "a csv or parquet write needs 'data' as a non-empty list of row maps")
    return [r for r in data if isinstance(r, dict)]


def _write_table(target: Path, fmt: str, rows: list[Mapping[str, JSON]], call: Call) -> None:
    import duckdb

    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as tmp:
        for row in rows:
            tmp.write(json.dumps(row) + "\n")
    partial = target.with_name(f".{target.name}.partial")
    con = duckdb.connect(":memory:")
    try:
        option = "FORMAT csv, HEADER true" if fmt == "csv" else "FORMAT parquet"
        con.execute(
            f"COPY (SELECT * FROM read_json_auto(?)) TO '{_sql_text(partial)}' ({option})", [tmp.name]
        )
        os.replace(partial, target)  # readers never see a half-written file
    except duckdb.Error as exc:
        raise _error(call, "data", f"cannot write {fmt} file '{target.name}': {exc}") from None
    finally:
        con.close()
        os.unlink(tmp.name)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)


def _sql_text(path: Path) -> str:
    return str(path).replace("'", "''")


def _list(target: Path, config: FileConfig, call: Call) -> JSON:
    if not target.is_dir():
        raise _error(call, "path", f"directory '{config.path}' does not exist", kind="not_found")
    if ".." in PurePath(config.pattern).parts or os.path.isabs(config.pattern):
        raise _error(call, "pattern", f"pattern '{config.pattern}' must be relative, without '..'")
    found = target.rglob(config.pattern) if config.recursive else target.glob(config.pattern)
    files: list[JSON] = []
    truncated = False
    for entry in sorted(found):
        if entry.is_symlink() or not entry.is_file():
            continue
        if len(files) >= config.limit:
            truncated = True
            break
        stat = entry.stat()
        files.append(
            {"path": str(entry), "name": entry.name, "size": stat.st_size, "modified": stat.st_mtime}
        )
    return {"path": str(target), "files": files, "count": len(files), "truncated": truncated}


def _delete(target: Path, config: FileConfig, call: Call) -> JSON:
    if target.is_dir() and not target.is_symlink():
        if not config.recursive:
            raise _error(call, "recursive", f"'{config.path}' is a directory: set recursive: true")
        import shutil

        shutil.rmtree(target)
        return {"path": str(target), "deleted": True}
    try:
        target.unlink()
    except FileNotFoundError:
        return {"path": str(target), "deleted": False}
    return {"path": str(target), "deleted": True}


def _exists(target: Path, config: FileConfig, call: Call) -> JSON:
    if not target.exists():
        return {"path": str(target), "exists": False}
    return {"path": str(target), "exists": True, "size": target.stat().st_size, "is_dir": target.is_dir()}


def _error(call: Call, field: str, message: str, *, kind: str = "file") -> ToolError:
    return ToolError(f"file {call.task}: {message}", error_kind=kind, step=call.step, field=field)


_OPERATIONS = {"read": _read, "write": _write, "list": _list, "delete": _delete, "exists": _exists}

TOOL = FileTool()
