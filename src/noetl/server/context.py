"""What request handlers share: the settings, the connection pool, the orchestrator, the cipher,
a cache of parsed playbooks, and one of folded execution states.

The lifespan (``noetl.server.app``) builds one :class:`ServerContext` and keeps it on
``app.state``; handlers receive it through the :data:`Server` dependency.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from psycopg_pool import AsyncConnectionPool

from noetl.runtime.orchestration import Orchestrator
from noetl.server.folds import Folds
from noetl.server.playbooks import PlaybookCache
from noetl.server.settings import ServerSettings
from noetl.store.crypto import Cipher
from noetl.store.db import Connection
from noetl.telemetry.export import Exporter


@dataclass(frozen=True, slots=True)
class ServerContext:
    settings: ServerSettings
    database_url: str
    pool: AsyncConnectionPool[Connection]
    orchestrator: Orchestrator
    cipher: Cipher
    playbooks: PlaybookCache
    exporter: Exporter | None = None
    """The event exporter when a sink is configured (``NOETL_EXPORT_CLICKHOUSE_URL``)."""
    folds: Folds = field(default_factory=Folds)
    """Execution states folded for the status API, folded on as events arrive."""


def server_context(request: Request) -> ServerContext:
    context: ServerContext = request.app.state.noetl
    return context


Server = Annotated[ServerContext, Depends(server_context)]
