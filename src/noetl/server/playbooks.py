"""Parsed playbooks by catalog id, for endpoints that need a playbook's shape (step counts).

A catalog entry never changes once written, so a parsed playbook stays valid for its catalog id;
the cache only bounds memory. Parsing runs in a thread to keep the event loop free.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from noetl.dsl.model import Playbook
from noetl.runtime import loader
from noetl.server.problems import NotFound
from noetl.store import catalog
from noetl.store.db import Connection


class PlaybookCache:
    """The last ``size`` playbooks used, parsed."""

    def __init__(self, size: int = 128) -> None:
        self.size = size
        self._entries: OrderedDict[int, Playbook] = OrderedDict()

    def keep(self, catalog_id: int, playbook: Playbook) -> None:
        """Remember a playbook parsed elsewhere (registering it parsed it already)."""
        self._entries[catalog_id] = playbook
        self._entries.move_to_end(catalog_id)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    async def get(self, conn: Connection, catalog_id: int) -> Playbook:
        playbook = self._entries.get(catalog_id)
        if playbook is not None:
            self._entries.move_to_end(catalog_id)
            return playbook
        entry = await catalog.get(conn, catalog_id=catalog_id)
        if entry is None:
            raise NotFound(f"catalog entry {catalog_id} not found")
        playbook = await asyncio.to_thread(loader.parse, entry.content, source=entry.path)
        self._entries[catalog_id] = playbook
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return playbook
