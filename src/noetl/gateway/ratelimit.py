"""Per-principal rate limits: a token bucket each, refilled continuously.

A principal may send ``burst`` requests at once and ``rate`` per second on average; a request
beyond that is refused with the seconds until a token is back (the 429's ``Retry-After``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, at)

    def take(self, name: str) -> int:
        """0 when the request may go, else the whole seconds to wait before trying again."""
        now = self._clock()
        tokens, at = self._buckets.get(name, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self._buckets[name] = (tokens - 1.0, now)
            return 0
        self._buckets[name] = (tokens, now)
        return max(1, math.ceil((1.0 - tokens) / self.rate)) if self.rate > 0 else 3600
