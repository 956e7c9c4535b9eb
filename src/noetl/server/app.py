"""The server application: routes, error handling, and what runs for the app's lifetime.

On start (the lifespan) the server finds its database (the embedded PostgreSQL when no URL is
set), applies pending migrations, opens a connection pool, and starts three background tasks: the
orchestrator loop (``Orchestrator.serve``: LISTEN ``noetl_results`` + polling), the lease
reaper, the scheduler (``noetl.server.scheduler``: schedules and priority aging, one leader) and,
when a sink is configured, the event exporter (``noetl.telemetry.export``, one leader).
On stop it signals them, waits up to ``shutdown_grace`` seconds, and closes the pool.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from noetl import __version__
from noetl.engine.decide import Limits
from noetl.runtime import placement
from noetl.runtime.orchestration import Orchestrator
from noetl.server import (
    apidocs,
    auth,
    browse,
    catalog,
    credentials,
    events,
    execute,
    executions,
    health,
    live,
    metrics,
    problems,
    queue,
    reaper,
    replay,
    schedules,
    telemetry,
    tools,
    triggers,
    ui,
    workers,
)
from noetl.server.context import ServerContext
from noetl.server.limits import BodyLimit
from noetl.server.playbooks import PlaybookCache
from noetl.server.scheduler import Scheduler
from noetl.server.settings import ServerSettings
from noetl.store import db, migrate

log = logging.getLogger("noetl.server")

ROUTERS = (
    health.router,
    catalog.router,
    execute.router,
    browse.catalog_router,
    browse.router,  # before executions.router: /api/executions/search is not an execution id
    executions.router,
    events.router,
    queue.router,
    workers.router,
    credentials.router,
    replay.router,
    schedules.router,
    triggers.router,
    metrics.router,
    tools.router,
    telemetry.router,
    ui.router,
)


def create_app(settings: ServerSettings) -> FastAPI:
    """The ASGI application for ``settings`` (nothing connects until the lifespan starts)."""
    app = FastAPI(
        title="NoETL",
        version=__version__,
        summary="Orchestrator server: catalog, executions, events, workers, credentials, replay.",
        lifespan=_lifespan(settings),
        redirect_slashes=False,  # a 307 to "path/" would name the server's own address
        docs_url=None,  # apidocs serves /docs with local assets (the default page loads a CDN)
        redoc_url=None,
    )
    apidocs.install(app)
    problems.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        auth.ServiceAuth, token=settings.service_token, insecure_loopback=settings.insecure_loopback
    )
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/ui/assets", ui.assets(), name="ui-assets")
    return app


def _lifespan(settings: ServerSettings) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cipher = credentials.cipher(settings, embedded=not settings.database_url)
        ready = await prepare(settings)
        assert ready.database_url is not None
        pool = await db.pool(
            ready.database_url,
            ready.pool_min_size,
            ready.pool_max_size,
            timeout=ready.pool_timeout,
            open_timeout=30.0,
        )
        try:
            context = ServerContext(
                settings=ready,
                database_url=ready.database_url,
                pool=pool,
                orchestrator=Orchestrator(
                    pool,
                    limits=Limits(inline_results=settings.inline_results),
                    kind_pools=placement.kind_pools(ready.pools_by_kind),
                ),
                cipher=cipher,
                playbooks=PlaybookCache(),
                exporter=telemetry.exporter(ready, pool),
            )
            app.state.noetl = context
            app.state.ui_feeds = live.ExecutionFeeds(pool)
            app.state.ui_list_feed = live.ListFeed(pool)
            app.state.scheduler = Scheduler(
                context,
                tick=ready.scheduler_tick,
                aging_seconds=ready.priority_aging_seconds,
                retention=ready.retention_seconds,
            )
            async with background(context, app.state.scheduler):
                yield
        finally:
            await pool.close()

    return lifespan


async def prepare(settings: ServerSettings) -> ServerSettings:
    """Find the database and bring its schema up to date; the settings to serve with.

    ``serve`` calls this before the HTTP server starts, so a database that cannot be reached is a
    one-line error rather than a failed lifespan; the lifespan then finds nothing left to do.
    """
    url = await database_url(settings)
    if settings.migrate:
        applied = await migrate.apply(url)
        if applied:
            log.info("applied schema migrations %s", applied)
    return dataclasses.replace(settings, database_url=url, migrate=False)


async def database_url(settings: ServerSettings) -> str:
    """The configured URL, else the embedded PostgreSQL's (started on first use)."""
    if settings.database_url:
        return settings.database_url
    from noetl.store import embedded

    pgdata = settings.data_dir / "pg" if settings.data_dir is not None else None
    return await asyncio.to_thread(embedded.ensure, pgdata)


@asynccontextmanager
async def background(context: ServerContext, scheduler: Scheduler | None = None) -> AsyncIterator[None]:
    """Run the orchestrator loop, the reaper and the scheduler (as configured) while the block runs."""
    settings, stop = context.settings, asyncio.Event()
    jobs: list[Awaitable[None]] = []
    if settings.orchestrate:
        jobs.append(
            context.orchestrator.serve(context.database_url, stop, poll_interval=settings.poll_seconds)
        )
    if settings.reap:
        jobs.append(reaper.run(context.database_url, stop, settings.reaper_interval))
    if settings.schedule and scheduler is not None:
        jobs.append(scheduler.run(stop))
    if context.exporter is not None:
        jobs.append(context.exporter.run(stop))
    tasks = [asyncio.create_task(_logged(job)) for job in jobs]
    try:
        yield
    finally:
        stop.set()
        _, pending = await asyncio.wait(tasks, timeout=settings.shutdown_grace) if tasks else (set(), set())
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _logged(job: Awaitable[None]) -> None:
    try:
        await job
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("background task stopped with an error")
