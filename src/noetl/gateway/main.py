"""Running the gateway process: ``serve(settings)`` runs uvicorn until SIGINT/SIGTERM."""

from __future__ import annotations

import logging

from noetl.gateway.settings import GatewaySettings


def serve(settings: GatewaySettings) -> None:
    import uvicorn

    from noetl.gateway.app import create_app
    from noetl.server.main import signals_end_quietly

    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        lifespan="on",
        access_log=False,  # the audit trail records every request with its decision
    )
    with signals_end_quietly():  # a normal exit, so the embedded PostgreSQL's handle is released
        uvicorn.Server(config).run()
