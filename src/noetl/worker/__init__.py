"""The worker: a stateless process that leases commands from the PostgreSQL queue and runs them.

``noetl worker start`` builds :class:`WorkerSettings` and calls :func:`main`; tests and embedders
run one in-process with ``await run_worker(settings, stop)``. The loop itself lives in
:mod:`noetl.worker.worker`; it is imported on first use, so that importing this package stays cheap.
"""

from __future__ import annotations

import asyncio

from noetl.worker.settings import WorkerSettings

__all__ = ["WorkerSettings", "main", "run_worker"]


async def run_worker(
    settings: WorkerSettings, stop: asyncio.Event, hurry: asyncio.Event | None = None
) -> None:
    """Run a worker until ``stop`` is set, then shut down gracefully (``hurry`` skips the grace period)."""
    from noetl.worker import worker

    await worker.run_worker(settings, stop, hurry)


def main(settings: WorkerSettings) -> int:
    """Run a worker until SIGTERM/SIGINT; returns the exit code (0 after a graceful stop)."""
    from noetl.worker import worker

    return worker.main(settings)
