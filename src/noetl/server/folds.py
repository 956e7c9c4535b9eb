"""Folded execution states for the read API, kept between requests.

``GET /api/executions/{id}/status`` answers from the fold of the execution's log. A client that
polls a long execution (``noetl exec``, the UI) used to read and fold the whole log on every poll:
O(events) per request, so watching a 10,000-step chain cost O(n^2) (issue 17). :class:`Folds`
keeps the last states it folded and, on each request, reads and folds only the events appended
since. The first fold of an execution runs in a thread; tail folds (small) run on the event loop,
so nothing folds into a state while a handler reads it. Folding is pure, so a cached state equals
a fresh fold of the same events.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from noetl.engine import state as st
from noetl.store import events
from noetl.store.db import Connection


class Folds:
    """The last ``size`` execution states folded (least recently used dropped first)."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._states: OrderedDict[int, st.State] = OrderedDict()
        self._locks: dict[int, asyncio.Lock] = {}
        self.folded = 0
        """Events folded so far (a measure of the work done, for tests)."""

    async def state(self, conn: Connection, execution_id: int) -> st.State:
        """The execution's state as of its last event in the log. Callers must not change it."""
        lock = self._locks.setdefault(execution_id, asyncio.Lock())
        async with lock:
            cached = self._states.get(execution_id)
            if cached is None:
                log = await events.read(conn, execution_id)
                state = await asyncio.to_thread(st.fold, log)
            else:
                log = await events.read(conn, execution_id, after=cached.last_event_id)
                state = st.fold(log, cached)
            self.folded += len(log)
            self._states[execution_id] = state
            self._states.move_to_end(execution_id)
            while len(self._states) > self.size:
                dropped, _ = self._states.popitem(last=False)
                self._locks.pop(dropped, None)
            return state
