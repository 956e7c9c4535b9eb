"""Liveness: ``GET /health`` and ``GET /api/health`` answer ``{"status": "ok"}`` without touching
the database, so a load balancer's probe stays cheap; ``GET /api/health/db`` checks PostgreSQL."""

from __future__ import annotations

from fastapi import APIRouter

from noetl.server.context import Server

router = APIRouter(tags=["health"])


@router.get("/health")
@router.get("/api/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/api/health/db")
async def database_health(server: Server) -> dict[str, object]:
    async with server.pool.connection() as conn:
        await conn.execute("SELECT 1")
    stats = server.pool.get_stats()
    return {
        "status": "ok",
        "pool": {"size": stats.get("pool_size", 0), "available": stats.get("pool_available", 0)},
    }
