"""Row ids for executions and catalog entries (see :mod:`noetl.ids`)."""

from __future__ import annotations

from noetl.ids import EPOCH_MS, RANDOM_BITS, new_id

__all__ = ["EPOCH_MS", "RANDOM_BITS", "new_id"]
