"""``GET /api/replay/state``: an execution's state folded from its log, as of an event (REFERENCE §5.8).

The state is the engine's ``State`` as plain JSON (``noetl.engine.state.snapshot``) and the
checksum is the sha256 of its canonical JSON (sorted keys, no spaces), the same as
``noetl.engine.state.checksum``: equal logs give equal checksums, and a client can recompute it
from the returned ``state``. Folding runs in a thread, so a long log does not stall the server.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Annotated, Any

from fastapi import APIRouter, Query

from noetl.engine import state as st
from noetl.engine.events import Event
from noetl.server.context import Server
from noetl.server.problems import NotFound
from noetl.store import events, executions

router = APIRouter(prefix="/api/replay", tags=["replay"])


@router.get("/state")
async def replay_state(
    execution_id: int,
    server: Server,
    as_of_event_id: Annotated[int | None, Query(ge=0)] = None,
) -> dict[str, Any]:
    async with server.pool.connection() as conn:
        if await executions.get(conn, execution_id) is None:
            raise NotFound(f"execution {execution_id} not found")
        log = await events.read(conn, execution_id)
    if as_of_event_id is not None:
        log = [e for e in log if e.id <= as_of_event_id]
    state, checksum = await asyncio.to_thread(replay, log)
    return {
        "execution_id": str(execution_id),
        "as_of_event_id": log[-1].id if log else 0,
        "event_count": len(log),
        "status": state["status"],
        "state": state,
        "checksum": checksum,
    }


def replay(log: list[Event]) -> tuple[dict[str, Any], str]:
    """The folded state of ``log`` as JSON, and the sha256 of its canonical form."""
    text = canonical(st.snapshot(st.fold(log)))
    return json.loads(text), hashlib.sha256(text.encode()).hexdigest()


def canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
