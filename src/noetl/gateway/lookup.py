"""What a request is about: the catalog entry or execution its authorization depends on.

The gateway asks the server (with the service token) and decides on the answer, then forwards a
request naming exactly what it decided on:

* ``register``: the playbook text is parsed with the server's own loader (base64 content decoded
  the server's way); the catalog path is the one the server would register, and the forwarded body
  carries the decoded text.
* ``entry`` (execute, a catalog entry, its graph): ``catalog_id`` or ``path``/``version`` are resolved
  to ONE catalog entry; a body naming both a ``catalog_id`` and a ``path`` that disagree is refused.
  Execute is forwarded with the resolved ``catalog_id`` only, so the server runs exactly the entry
  that was authorized; its ``parent_execution_id``, when given, must name an execution the
  principal may see.
* ``execution``: the execution named in the URL (or by ``execution_id`` in the query of
  ``replay/state``).
* ``url``: the catalog path is in the URL itself (``stats/<path>``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from noetl.dsl import catalogpath
from noetl.errors import NoetlError
from noetl.gateway import policy
from noetl.gateway.canonical import Target

ServerJson = Callable[[str, str, dict[str, Any] | None], Awaitable[dict[str, Any] | None]]


class Refused(Exception):
    """A request the gateway answers itself (status, reason, code, extra headers)."""

    def __init__(self, status: int, reason: str, code: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.code, self.headers = status, reason, code, headers or {}


@dataclass(frozen=True, slots=True)
class Subject:
    """The playbook path to authorize, the body to forward, and the execution concerned."""

    path: str | None
    body: bytes
    execution_id: str | None = None


async def subject(
    action: policy.Action, target: Target, body: bytes, principal: policy.Principal, server: ServerJson
) -> Subject:
    if action.lookup == "register":
        return _register(body)
    if action.lookup == "entry":
        return await _entry(target, body, principal, server)
    if action.lookup == "execution":
        execution_id = action.execution_id or target.get("execution_id")
        if not execution_id:
            raise Refused(400, "give execution_id", "invalid_request")
        return Subject(await _execution_path(execution_id, server), body, execution_id)
    if action.lookup == "url":
        path = action.url_path or ""
        _check_path(path)
        return Subject(path, body)
    return Subject(None, body)


def _register(body: bytes) -> Subject:
    from noetl.runtime import loader
    from noetl.server.catalog import playbook_text

    request = parse_json(body)
    content = request.get("content")
    if not isinstance(content, str) or not content:
        raise Refused(400, "register needs 'content' (the playbook YAML)", "invalid_request")
    text = playbook_text(content)
    try:
        playbook = loader.parse(text)
    except RecursionError:
        raise Refused(400, "the playbook YAML is nested too deeply", "validation") from None
    except NoetlError as exc:
        raise Refused(400, f"the playbook is not valid: {exc}", "validation") from None
    return Subject(playbook.path, json.dumps({**request, "content": text}).encode())


async def _entry(target: Target, body: bytes, principal: policy.Principal, server: ServerJson) -> Subject:
    request = parse_json(body)
    catalog_id, path, version = request.get("catalog_id"), request.get("path"), request.get("version")
    if catalog_id is None and not path:
        raise Refused(400, "give 'catalog_id', or 'path' (and optionally 'version')", "invalid_request")
    if path is not None:
        if not isinstance(path, str):
            raise Refused(400, "'path' must be a string", "invalid_request")
        _check_path(path)
    query: dict[str, Any] = {"catalog_id": catalog_id} if catalog_id is not None else {"path": path}
    if catalog_id is None and version not in (None, "latest"):
        query["version"] = version
    entry = await server("POST", "/api/catalog/resource", query)
    if entry is None:
        raise Refused(404, f"catalog entry {catalog_id or path} not found", "not_found")
    found_path = str(entry.get("path"))
    if path is not None and found_path != path:
        raise Refused(
            400,
            f"catalog_id {catalog_id} is '{found_path}', not '{path}': give one or the other",
            "invalid_request",
        )
    if catalog_id is not None and version not in (None, "latest") and entry.get("version") != version:
        raise Refused(400, f"catalog_id {catalog_id} is not version {version}", "invalid_request")
    parent = request.get("parent_execution_id")
    if parent is not None:
        await _parent_allowed(parent, principal, server)
    if target.path == "catalog/graph":
        forwarded = {"path": found_path, "version": entry.get("version")}
    else:
        forwarded = {k: v for k, v in request.items() if k not in ("path", "version", "catalog_id")}
        forwarded["catalog_id"] = int(str(entry.get("catalog_id")))
    return Subject(found_path, json.dumps(forwarded).encode())


async def _parent_allowed(parent: object, principal: policy.Principal, server: ServerJson) -> None:
    if not str(parent).isdigit():
        raise Refused(400, "'parent_execution_id' must be an execution id", "invalid_request")
    path = await _execution_path(str(parent), server)
    if not policy.path_allowed(principal.paths, path):
        raise Refused(
            403,
            f"parent execution {parent} runs '{path}', outside the paths allowed to '{principal.name}'",
            "forbidden",
        )


async def _execution_path(execution_id: str, server: ServerJson) -> str | None:
    if not execution_id.isdigit():
        raise Refused(400, "an execution id is a whole number", "invalid_request")
    found = await server("GET", f"/api/executions/{execution_id}?include_events=false", None)
    if found is None:
        raise Refused(404, f"execution {execution_id} not found", "not_found")
    return str(found["path"]) if found.get("path") else None


def _check_path(path: str) -> None:
    wrong = catalogpath.problem(path)
    if wrong is not None:
        raise Refused(400, f"catalog path {path!r} is not valid: {wrong}", "validation")


def parse_json(body: bytes, max_depth: int = 64) -> dict[str, Any]:
    """The JSON object of a request body; 400 when it is not one or nests deeper than ``max_depth``."""
    check_depth(body, max_depth)
    try:
        value = json.loads(body or b"{}")
    except (ValueError, RecursionError):
        raise Refused(400, "the request body is not JSON", "invalid_request") from None
    if not isinstance(value, dict):
        raise Refused(400, "the request body must be a JSON object", "invalid_request")
    return value


def check_depth(body: bytes, max_depth: int) -> None:
    """400 when the JSON text ``body`` opens more than ``max_depth`` nested arrays/objects (one
    linear pass over the bytes, strings skipped; nothing is parsed)."""
    depth, in_string, escaped = 0, False, False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > max_depth:
                raise Refused(
                    400, f"the request body nests deeper than {max_depth} levels", "invalid_request"
                )
        elif byte in (0x5D, 0x7D):
            depth -= 1
