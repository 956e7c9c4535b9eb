"""``python -m noetl.worker``: a worker configured from the environment (``NOETL_*``, see settings)."""

from __future__ import annotations

import os
import sys

from noetl.errors import NoetlError
from noetl.worker import main
from noetl.worker.settings import WorkerSettings


def run() -> int:
    try:
        settings = WorkerSettings.from_env(os.environ)
    except NoetlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return main(settings)


if __name__ == "__main__":
    sys.exit(run())
