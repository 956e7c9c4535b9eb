"""Ids for executions and catalog entries: 64-bit snowflake-style integers.

Layout as upstream (REFERENCE §6): milliseconds since 2024-01-01 UTC shifted left by 23 bits, the
low 23 bits random. Sortable by creation time and unique across processes without a round trip to
the database. JSON carries them as strings.
"""

from __future__ import annotations

import os
import time

EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
RANDOM_BITS = 23


def new_id() -> int:
    """A fresh id; later calls give larger ids, except within the same millisecond."""
    ms = int(time.time() * 1000) - EPOCH_MS
    return (ms << RANDOM_BITS) | (int.from_bytes(os.urandom(3), "big") >> 1)
