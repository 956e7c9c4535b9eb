"""Execution ids: 64-bit snowflake-style integers, serialised as strings.

Layout as upstream (REFERENCE §6): milliseconds since 2024-01-01 UTC shifted left by 23 bits,
the low 23 bits random. Sortable by creation time; unique enough for one process or many.
"""

from __future__ import annotations

import secrets
import time

EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def new_execution_id() -> str:
    ms = int(time.time() * 1000) - EPOCH_MS
    return str((ms << 23) | secrets.randbits(23))
