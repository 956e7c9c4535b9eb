"""Webhook triggers: ``POST /api/triggers/{name}`` starts an execution with the request body as payload.

A trigger names a playbook path and holds a secret. The caller signs the exact body bytes:
``X-NoETL-Signature: sha256=<hex HMAC-SHA256 of the body under the secret>``. A missing or wrong
signature gets 401 and starts nothing; the comparison takes constant time. The body must be a JSON
object (it becomes the workload overlay). Back-pressure applies as on ``/api/execute`` (429).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from noetl.errors import UsageError
from noetl.server.context import Server
from noetl.server.execute import admit
from noetl.server.problems import NotFound
from noetl.store import catalog, triggers

router = APIRouter(prefix="/api", tags=["triggers"])

SIGNATURE_HEADER = "X-NoETL-Signature"


class TriggerRequest(BaseModel):
    path: str = Field(min_length=1)
    secret: str = Field(min_length=16)


def signature(secret: str, body: bytes) -> str:
    """The header value a caller sends: ``sha256=<hex>``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


@router.put("/triggers/{name}/config")
async def put_trigger(name: str, body: TriggerRequest, server: Server) -> dict[str, Any]:
    async with server.pool.connection() as conn:
        await triggers.put(conn, name, body.path, body.secret, cipher=server.cipher)
    return {"name": name, "path": body.path}


@router.get("/triggers")
async def list_triggers(server: Server) -> dict[str, Any]:
    async with server.pool.connection() as conn:
        found = await triggers.list(conn)
    return {"triggers": [{**t, "created_at": t["created_at"].isoformat()} for t in found]}


@router.delete("/triggers/{name}/config")
async def delete_trigger(name: str, server: Server) -> dict[str, Any]:
    async with server.pool.connection() as conn:
        if not await triggers.delete(conn, name):
            raise NotFound(f"trigger {name} not found")
    return {"deleted": name}


@router.post("/triggers/{name}")
async def fire(name: str, request: Request, server: Server) -> dict[str, Any]:
    raw = await request.body()
    async with server.pool.connection() as conn:
        trigger = await triggers.get(conn, name, cipher=server.cipher)
        if trigger is None or not trigger["enabled"]:
            raise NotFound(f"trigger {name} not found")
        given = request.headers.get(SIGNATURE_HEADER, "")
        if not hmac.compare_digest(given.encode(), signature(trigger["secret"], raw).encode()):
            raise HTTPException(401, f"trigger {name}: missing or wrong {SIGNATURE_HEADER} signature")
        entry = await catalog.get(conn, path=trigger["path"])
    if entry is None:
        raise NotFound(f"trigger {name}: playbook {trigger['path']} not found in the catalog")
    payload = _payload(raw)
    await admit(server, entry)
    execution_id = await server.orchestrator.start(entry, payload)
    async with server.pool.connection() as conn:
        await triggers.fired(conn, name)
    return {"execution_id": str(execution_id), "status": "RUNNING", "path": entry.path, "trigger": name}


def _payload(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise UsageError(f"the trigger body is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"the trigger body must be a JSON object, got {type(value).__name__}")
    return value
