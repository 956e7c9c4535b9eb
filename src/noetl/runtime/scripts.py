"""Upstream's ``script:`` field: a python, postgres, duckdb or shell task's code loaded from elsewhere.

A task may give its code as ``script: {uri, source: {type, ...}}`` instead of ``code`` /
``command``. The runner calls :func:`resolve` with the task's rendered fields; the loaded text
replaces ``script`` under the field the tool reads, so the tools themselves never see ``script``:

* ``source.type: inline``: ``source.code`` (or ``source.content``) is the text;
* ``source.type: file``: ``uri`` (or ``source.path``) is a file under the deployment's file roots,
  the same roots as the ``file`` tool (``NOETL_FILE_ROOTS``; ``noetl run`` defaults to the working
  directory); a relative path is taken from the first root, ``..`` and paths outside the roots are
  refused;
* ``source.type: http``: ``uri`` (or ``source.url``) is fetched with GET; a status outside 2xx is an
  error;
* ``source.type: s3`` / ``gcs``: not loaded here; the error says to copy the object to a file root
  with the ``s3``/``gcs`` tool first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from noetl.dsl.model import JSON
from noetl.errors import ToolConfigError, ToolError
from noetl.tools.base import Services

CODE_FIELDS: Mapping[str, str] = {
    "python": "code",
    "postgres": "command",
    "duckdb": "command",
    "shell": "command",
}
"""Tool kind -> the field that ``script`` fills."""

_HTTP_TIMEOUT = 30.0
_MAX_BYTES = 10 * 1024 * 1024


async def resolve(kind: str, config: dict[str, JSON], services: Services, step: str) -> dict[str, JSON]:
    """``config`` with ``script`` replaced by the loaded text (unchanged without ``script``)."""
    script = config.get("script")
    target = CODE_FIELDS.get(kind)
    if script is None or target is None:
        return config
    if not isinstance(script, dict):
        raise _config(step, "field 'script' must be a map {uri, source: {type: inline|file|http, ...}}")
    if any(config.get(name) for name in (target, "query", "cmds", "commands")):
        raise _config(step, f"a {kind} task takes 'script' or '{target}', not both")
    source = script.get("source") or {}
    if not isinstance(source, dict):
        raise _config(step, "field 'script.source' must be a map with a 'type'")
    kind_of_source = str(source.get("type") or ("inline" if "code" in source else "file")).lower()
    text = await _load(kind_of_source, script, source, services, step)
    loaded = {key: value for key, value in config.items() if key != "script"}
    loaded[target] = text
    return loaded


async def _load(
    source_type: str, script: Mapping[str, JSON], source: Mapping[str, JSON], services: Services, step: str
) -> str:
    if source_type == "inline":
        code = source.get("code", source.get("content"))
        if not isinstance(code, str):
            raise _config(step, "script.source.code must be the code text for type inline")
        return code
    location = source.get("path", source.get("url", script.get("uri")))
    if not isinstance(location, str) or not location:
        raise _config(step, f"script.uri must name the {source_type} source")
    if source_type == "file":
        return await asyncio.to_thread(_read_file, location, services, step)
    if source_type == "http":
        return await _fetch(location, step)
    if source_type in ("s3", "gcs"):
        raise _config(
            step,
            f"script sources of type '{source_type}' are not loaded by this build: copy the object into a "
            f"file root with the {source_type} tool first and use script.source.type: file",
        )
    raise _config(step, f"unknown script.source.type '{source_type}'; allowed: inline, file, http")


def _read_file(path: str, services: Services, step: str) -> str:
    from noetl.tools.base import Call
    from noetl.tools.file_tool import ROOTS_KEY, confine

    roots = tuple(str(root) for root in services.extras.get(ROOTS_KEY) or ())
    call = Call("", step, "script", "file", {}, {}, services=services)
    target = confine(roots, path, call)
    try:
        data = target.read_bytes()
    except OSError as exc:
        raise ToolError(
            f"script file '{path}' cannot be read: {exc.strerror}", error_kind="file", step=step
        ) from None
    if len(data) > _MAX_BYTES:
        raise _config(step, f"script file '{path}' is larger than {_MAX_BYTES // (1024 * 1024)} MiB")
    return data.decode("utf-8", errors="replace")


async def _fetch(url: str, step: str) -> str:
    import httpx

    try:
        async with httpx.AsyncClient(timeout=_HTTP_TIMEOUT, follow_redirects=True) as client:
            response = await client.get(url)
    except httpx.HTTPError as exc:
        shown = httpx.URL(url).copy_with(query=None, fragment=None, userinfo=b"")
        raise ToolError(
            f"script {shown} could not be fetched: {type(exc).__name__}", error_kind="connection", step=step
        ) from None
    if not 200 <= response.status_code < 300:
        shown = response.request.url.copy_with(query=None, fragment=None, userinfo=b"")
        raise ToolError(f"script {shown} answered HTTP {response.status_code}", error_kind="http", step=step)
    return response.text


def _config(step: str, message: str) -> ToolConfigError:
    return ToolConfigError(message, step=step, field="script")
