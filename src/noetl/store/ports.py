"""The store's ports: what the server, the orchestrator and workers need from PostgreSQL.

The dataclasses are what the PostgreSQL adapter (the modules ``noetl.store.catalog``,
``commands``, ``events``, ... : async functions taking an open connection first) reads and writes.
Ids: execution and catalog ids are 64-bit integers (strings in JSON);
command ids are the engine's ``"<execution_id>:<n>"`` strings; event ids are per-execution
sequence numbers (1, 2, 3, ...) assigned when the orchestrator appends them.

Queue states of a command: ``ready`` -> ``leased`` -> ``done`` | ``failed`` (the worker reported)
-> recorded by the orchestrator; ``cancelled`` when the execution is cancelled. A lease that
expires sends the command back to ``ready`` (its next claim is ``attempt + 1``), or to ``failed``
after ``max_attempts``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    catalog_id: int
    path: str
    version: int
    kind: str
    content: str
    meta: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ExecutionRow:
    execution_id: int
    catalog_id: int | None
    path: str
    status: str
    parent_execution_id: int | None = None
    payload: dict[str, Any] | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    last_event_id: int = 0
    cancel_requested: bool = False
    cancel_reason: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    completed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Lease:
    """A command a worker claimed: everything it needs to run it."""

    command_id: str
    execution_id: int
    catalog_id: int | None
    step: str
    index: int | None
    attempt: int
    context: dict[str, Any]
    pool: str
    priority: int
    max_attempts: int = 3
    concurrency_key: str | None = None
    needs: dict[str, Any] | None = None
    """What the claim checked (resources, key limit, gate); None for a plain command."""


@dataclass(frozen=True, slots=True)
class NewCommand:
    command_id: str
    execution_id: int
    catalog_id: int | None
    step: str
    index: int | None
    context: dict[str, Any]
    pool: str = "default"
    priority: int = 0
    max_attempts: int = 3
    concurrency_key: str | None = None
    needs: dict[str, Any] | None = None
    """What a claim must check first (``{resources, key_limit, gate, gate_limit}``, see migration
    0002); None for a plain command. A command with needs is never leased without that check."""

    @property
    def constrained(self) -> bool:
        """True when only the checked claim may lease it (never a reporting worker's own take)."""
        return self.needs is not None


@dataclass(frozen=True, slots=True)
class Report:
    """A worker's result for one leased command: the events it produced, in ``Event.to_dict`` form."""

    worker_id: str
    command_id: str
    attempt: int
    ok: bool
    events: list[dict[str, Any]]
    execution_id: int = 0
    """The command's execution (lets the reporter lock it in the same round trip; 0 if unknown)."""


class PendingResult(NamedTuple):
    """A reported outcome the orchestrator has not recorded yet (``status`` is done or failed)."""

    command_id: str
    status: str
    outcome: list[dict[str, Any]]
