"""JSON views of store rows as the API returns them: ids as strings, times as ISO 8601."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from noetl.dsl import yamlload
from noetl.errors import PlaybookError
from noetl.store.ports import CatalogEntry, ExecutionRow, Lease


def timestamp(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def optional_id(value: int | None) -> str | None:
    return str(value) if value is not None else None


def catalog_entry(entry: CatalogEntry) -> dict[str, Any]:
    return {
        "catalog_id": str(entry.catalog_id),
        "path": entry.path,
        "version": entry.version,
        "kind": entry.kind,
        "content": entry.content,
        "layout": None,
        "payload": workload_of(entry.content),
        "meta": entry.meta,
        "created_at": timestamp(entry.created_at),
    }


def workload_of(content: str) -> dict[str, Any] | None:
    """The ``workload`` map of a stored playbook (upstream lists it as the entry's ``payload``)."""
    try:
        document = yamlload.load(content).root
    except PlaybookError:
        return None
    workload = document.get("workload") if isinstance(document, dict) else None
    return workload if isinstance(workload, dict) else None


def execution_summary(row: ExecutionRow) -> dict[str, Any]:
    return {
        "execution_id": str(row.execution_id),
        "path": row.path,
        "status": row.status,
        "catalog_id": optional_id(row.catalog_id),
        "parent_execution_id": optional_id(row.parent_execution_id),
        "created_at": timestamp(row.created_at),
        "completed_at": timestamp(row.completed_at),
        "error": row.error,
    }


def execution_detail(row: ExecutionRow) -> dict[str, Any]:
    return {
        **execution_summary(row),
        "payload": row.payload,
        "result": row.result,
        "last_event_id": row.last_event_id,
        "cancel_requested": row.cancel_requested,
        "updated_at": timestamp(row.updated_at),
    }


def lease(item: Lease) -> dict[str, Any]:
    return {
        "command_id": item.command_id,
        "execution_id": str(item.execution_id),
        "catalog_id": optional_id(item.catalog_id),
        "step": item.step,
        "index": item.index,
        "attempt": item.attempt,
        "context": item.context,
        "pool": item.pool,
        "priority": item.priority,
    }
