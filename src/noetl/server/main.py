"""Running the server process: ``serve(settings)`` starts uvicorn on the app until SIGINT/SIGTERM.

Used by ``noetl server start``; ``python -m noetl.server.main`` does the same with settings from
the ``NOETL_*`` environment variables (see ``noetl.server.settings.ENVIRONMENT``). Without a
database URL the embedded PostgreSQL is started first and its location printed, so workers on the
same machine can be pointed at it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

from noetl.errors import NoetlError
from noetl.server.settings import ServerSettings
from noetl.telemetry import logs


def serve(settings: ServerSettings) -> None:
    """Serve the API until the process is told to stop; NoetlError if it could not start."""
    import uvicorn

    from noetl.server import credentials
    from noetl.server.app import create_app, prepare
    from noetl.store.db import redact

    _configure_logging(settings.log_level, settings.log_format)
    embedded = not settings.database_url
    credentials.cipher(settings, embedded=embedded)  # no key: refuse before touching anything
    if embedded and settings.data_dir is None:
        settings = dataclasses.replace(settings, data_dir=credentials.data_dir(settings))
    settings = _with_service_token(settings)
    settings = asyncio.run(prepare(settings))
    assert settings.database_url is not None
    if embedded:
        print(f"noetl: using the embedded PostgreSQL at {redact(settings.database_url)}", file=sys.stderr)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=logs.uvicorn_config(settings.log_format) or uvicorn.config.LOGGING_CONFIG,
        lifespan="on",
        proxy_headers=False,  # the client address is the peer's: X-Forwarded-For changes nothing here
        timeout_graceful_shutdown=int(settings.shutdown_grace) + 1,
    )
    server = uvicorn.Server(config)
    with signals_end_quietly():
        server.run()
    if not server.started:
        raise NoetlError(f"the server did not start on {settings.host}:{settings.port}; see the log above")


def _with_service_token(settings: ServerSettings) -> ServerSettings:
    """The settings with a service token: the configured one, else the data directory's (created
    on first start), which the CLI and the gateway on this machine read from the same file."""
    from noetl.server import credentials
    from noetl.store import servicetoken

    if settings.insecure_loopback:
        print(
            "noetl: WARNING --insecure-loopback: loopback clients without a token are served "
            "(development only: any local process, user code included, can use the API)",
            file=sys.stderr,
        )
    if settings.service_token:
        return settings
    directory = credentials.data_dir(settings)
    token = servicetoken.ensure(directory)
    print(f"noetl: the service token is in {servicetoken.path(directory)}", file=sys.stderr)
    return dataclasses.replace(settings, service_token=token)


@contextlib.contextmanager
def signals_end_quietly() -> Iterator[None]:
    """After its graceful shutdown uvicorn re-raises the stopping signal to the handler that was in
    place before it; a no-op handler there makes SIGINT/SIGTERM end the process with exit 0
    instead of a KeyboardInterrupt traceback or death by signal."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _ignore) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _ignore(_signum: int, _frame: FrameType | None) -> None:
    return None


def _configure_logging(level: str, fmt: str = "text") -> None:
    if fmt != "text":
        logs.configure(level, fmt)
        return
    logger = logging.getLogger("noetl")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level.upper())


def main() -> None:
    try:
        serve(ServerSettings.from_env(os.environ))
    except NoetlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
