"""Playbooks by catalog id, parsed once per worker.

A catalog entry never changes once registered (a new registration is a new version with a new
id), so a parsed playbook - or the error that parsing it gave - can be kept for the worker's
life. The cache is bounded (least recently used entries go first).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from noetl.dsl.model import Playbook
from noetl.errors import NoetlError, PlaybookError
from noetl.runtime import loader
from noetl.worker.database import Database

DEFAULT_SIZE: Final = 256


class Playbooks:
    """``await playbooks.get(catalog_id)``: the parsed playbook, or PlaybookError saying why not."""

    def __init__(self, database: Database, size: int = DEFAULT_SIZE) -> None:
        self._database = database
        self._size = size
        self._cache: OrderedDict[int, Playbook | NoetlError] = OrderedDict()

    @property
    def database(self) -> Database:
        return self._database

    async def get(self, catalog_id: int | None) -> Playbook:
        if catalog_id is None:
            raise PlaybookError("the command names no catalog entry (catalog_id is empty)")
        found = self._cache.get(catalog_id)
        if found is None:
            found = await self._load(catalog_id)
            self._cache[catalog_id] = found
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(catalog_id)
        if isinstance(found, NoetlError):
            raise found
        return found

    async def _load(self, catalog_id: int) -> Playbook | NoetlError:
        from noetl.store import catalog

        entry = await self._database.run(
            f"loading catalog entry {catalog_id}", lambda conn: catalog.get(conn, catalog_id=catalog_id)
        )
        if entry is None:
            return PlaybookError(f"catalog entry {catalog_id} not found: the playbook was never registered")
        try:
            return loader.parse(entry.content, source=entry.path)
        except NoetlError as exc:
            return PlaybookError(
                f"catalog entry {catalog_id} ({entry.path} v{entry.version}) is invalid: {exc}"
            )
