"""Running the gateway process: ``serve(settings)`` runs uvicorn until SIGINT/SIGTERM."""

from __future__ import annotations

from noetl.gateway.settings import GatewaySettings
from noetl.telemetry import logs


def serve(settings: GatewaySettings) -> None:
    import uvicorn

    from noetl.gateway.app import create_app
    from noetl.server.main import signals_end_quietly

    logs.configure(settings.log_level, settings.log_format)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=logs.uvicorn_config(settings.log_format) or uvicorn.config.LOGGING_CONFIG,
        lifespan="on",
        access_log=False,  # the audit trail records every request with its decision
        proxy_headers=False,  # X-Forwarded-For counts only from trusted proxies (noetl.gateway.clients)
    )
    with signals_end_quietly():  # a normal exit, so the embedded PostgreSQL's handle is released
        uvicorn.Server(config).run()
