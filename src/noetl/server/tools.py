"""Tool definitions: ``GET /api/tools`` and ``GET /api/tools/{kind}``.

Each entry is what the tool declares (:func:`noetl.tools.registry.describe`): kind, version,
provider, description, config JSON Schema, accepted credential types, result shape and an example.
The list is the server's own registry; workers are expected to run the same installation.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

from noetl.errors import ToolConfigError
from noetl.server.problems import NotFound
from noetl.tools import registry

router = APIRouter(prefix="/api/tools", tags=["tools"])


@router.get("")
async def list_tools() -> dict[str, Any]:
    return {"tools": await asyncio.to_thread(registry.describe_all)}


@router.get("/{kind}")
async def describe_tool(kind: str) -> dict[str, Any]:
    try:
        return await asyncio.to_thread(registry.describe, kind)
    except ToolConfigError as exc:
        raise NotFound(exc.message) from None
