"""Rate limits: a token bucket per key (a principal, or a client address before authentication).

A key may send ``burst`` requests at once and ``rate`` per second on average; a request beyond that
is refused with the seconds until a token is back (the 429's ``Retry-After``). At most ``max_keys``
buckets are kept, least recently used dropped first, so a flood of new keys (spoofed names, many
addresses) costs bounded memory: a dropped key starts again with a full bucket.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable


class RateLimiter:
    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def take(self, name: str) -> int:
        """0 when the request may go (a token is spent), else the whole seconds to wait."""
        tokens, now = self._tokens(name)
        if tokens >= 1.0:
            self._store(name, tokens - 1.0, now)
            return 0
        self._store(name, tokens, now)
        return self._wait(tokens)

    def waiting(self, name: str) -> int:
        """Like :meth:`take` but spends nothing: 0 when a token is available, else the wait."""
        tokens, _ = self._tokens(name)
        return 0 if tokens >= 1.0 else self._wait(tokens)

    def __len__(self) -> int:
        return len(self._buckets)

    def _tokens(self, name: str) -> tuple[float, float]:
        now = self._clock()
        tokens, at = self._buckets.get(name, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at) * self.rate), now

    def _store(self, name: str, tokens: float, now: float) -> None:
        self._buckets[name] = (tokens, now)
        self._buckets.move_to_end(name)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)

    def _wait(self, tokens: float) -> int:
        return max(1, math.ceil((1.0 - tokens) / self.rate)) if self.rate > 0 else 3600
