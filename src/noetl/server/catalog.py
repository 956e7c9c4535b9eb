"""Catalog endpoints: register a playbook (YAML text or base64 of it), list entries, fetch one.

Registration parses and checks the playbook before anything is stored, so an invalid one gets 422
naming the line and step and leaves the catalog as it was. Every registration of a path creates
the next version, even for identical content (as upstream).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from noetl.dsl.model import Playbook
from noetl.errors import UsageError
from noetl.runtime import inputs, loader
from noetl.server import views
from noetl.server.context import Server, ServerContext
from noetl.server.problems import NotFound
from noetl.store import catalog
from noetl.store.ports import CatalogEntry

router = APIRouter(prefix="/api/catalog", tags=["catalog"])

PLAYBOOK = "Playbook"


class RegisterRequest(BaseModel):
    content: str = Field(min_length=1, description="Playbook YAML, or the base64 of it.")
    resource_type: str = PLAYBOOK


class ListRequest(BaseModel):
    resource_type: str | None = None
    path: str | None = None


class ResourceRequest(BaseModel):
    catalog_id: int | None = None
    path: str | None = None
    version: int | Literal["latest"] | None = None


@router.post("/register")
async def register(body: RegisterRequest, server: Server) -> dict[str, Any]:
    if body.resource_type.lower() != PLAYBOOK.lower():
        raise UsageError(f"only {PLAYBOOK} resources can be registered, got {body.resource_type!r}")
    text = playbook_text(body.content)
    playbook = await asyncio.to_thread(loader.parse, text)
    meta: dict[str, Any] = {"name": playbook.name}
    if playbook.description:
        meta["description"] = playbook.description
    async with server.pool.connection() as conn, conn.transaction():
        entry = await catalog.register(conn, playbook.path, text, kind=PLAYBOOK, meta=meta)
    server.playbooks.keep(entry.catalog_id, playbook)  # its first execute need not parse it again
    return {
        "status": "success",
        "message": f"registered {entry.path} version {entry.version}",
        "path": entry.path,
        "version": entry.version,
        "catalog_id": str(entry.catalog_id),
        "kind": entry.kind,
        "warnings": list(playbook.warnings),
    }


@router.post("/list")
async def list_entries(body: ListRequest, server: Server) -> dict[str, Any]:
    kind = PLAYBOOK if body.resource_type and body.resource_type.lower() == "playbook" else body.resource_type
    async with server.pool.connection() as conn:
        entries = await catalog.list(conn, kind=kind, path=body.path)
    return {"entries": [views.catalog_entry(e) for e in entries]}


@router.post("/resource")
async def resource(body: ResourceRequest, server: Server) -> dict[str, Any]:
    if body.catalog_id is None and body.path is None:
        raise UsageError("give catalog_id, or path (and optionally version)")
    version = None if body.version == "latest" else body.version
    async with server.pool.connection() as conn:
        entry = await catalog.get(conn, catalog_id=body.catalog_id, path=body.path, version=version)
    if entry is None:
        raise NotFound(f"catalog entry {_describe(body)} not found")
    return views.catalog_entry(entry)


@router.get("/{path:path}/schema")
async def input_schema(path: str, server: Server, version: str | None = None) -> dict[str, Any]:
    """The playbook's input JSON Schema (workload defaults, ``# ui:`` hints, ``metadata.input_schema``)."""
    entry, playbook = await _playbook(server, path, version)
    return {
        "path": entry.path,
        "version": entry.version,
        "catalog_id": str(entry.catalog_id),
        "schema": inputs.input_schema(playbook, entry.content),
    }


@router.get("/{path:path}/ui_schema")
async def ui_schema(path: str, server: Server, version: str | None = None) -> dict[str, Any]:
    """The same, in upstream's ``ui_schema`` shape (a run form's fields)."""
    entry, playbook = await _playbook(server, path, version)
    return {
        "path": entry.path,
        "version": entry.version,
        "kind": entry.kind.lower(),
        "title": playbook.name,
        "description_markdown": playbook.description,
        "exposed_in_ui": bool(playbook.metadata.get("exposed_in_ui", False)),
        "fields": inputs.ui_fields(playbook, entry.content),
        "generated_at": datetime.now(UTC).isoformat(),
    }


async def _playbook(server: ServerContext, path: str, version: str | None) -> tuple[CatalogEntry, Playbook]:
    number: int | None = None
    if version not in (None, "", "latest"):
        try:
            number = int(str(version))
        except ValueError:
            raise UsageError(f"version must be a number or 'latest', got {version!r}") from None
    async with server.pool.connection() as conn:
        entry = await catalog.get(conn, path=path.strip("/"), version=number)
        if entry is None:
            raise NotFound(f"playbook {path} version {number or 'latest'} not found in the catalog")
        playbook = await server.playbooks.get(conn, entry.catalog_id)
    return entry, playbook


def playbook_text(content: str) -> str:
    """The YAML text of ``content``: itself, or what it decodes to when it is base64 of a playbook."""
    compact = "".join(content.split())
    try:
        decoded = base64.b64decode(compact, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return content
    return decoded if "apiVersion" in decoded else content


def _describe(body: ResourceRequest) -> str:
    if body.catalog_id is not None:
        return str(body.catalog_id)
    return f"{body.path} version {body.version or 'latest'}"
