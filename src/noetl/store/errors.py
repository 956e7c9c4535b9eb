"""The store's errors, and the one place where psycopg errors become NoETL errors.

Every public store function runs under :func:`translated`, so callers see only the NoETL tree::

    NoetlError
    └── StoreError            PostgreSQL refused an operation (bad data, constraint)   500
        ├── StoreUnavailable  PostgreSQL cannot be reached or the connection broke     503
        └── StoreConflict     a row with the same key already exists                   409

The driver's exception stays attached as ``__cause__``; ``sqlstate`` carries its SQLSTATE code.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import psycopg
from psycopg import errors as pg_errors

from noetl.errors import NoetlError

P = ParamSpec("P")
T = TypeVar("T")


class StoreError(NoetlError):
    """PostgreSQL refused an operation; ``sqlstate`` is its SQLSTATE code when it sent one."""

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate

    @property
    def kind(self) -> str:
        return "store"


class StoreUnavailable(StoreError):
    """PostgreSQL cannot be reached, or the connection broke mid-operation; retry later."""

    http_status = 503

    @property
    def kind(self) -> str:
        return "store_unavailable"


class StoreConflict(StoreError):
    """A row with the same key already exists (a unique constraint refused the write)."""

    http_status = 409

    @property
    def kind(self) -> str:
        return "conflict"


class StoreBadValue(StoreError):
    """A value the request gave is out of the column's range (e.g. an offset beyond bigint)."""

    http_status = 400

    @property
    def kind(self) -> str:
        return "invalid_request"


def from_driver(exc: psycopg.Error, doing: str) -> StoreError:
    """The NoETL error for a psycopg error raised while ``doing`` something (a short verb phrase)."""
    sqlstate = exc.sqlstate
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    message = f"{doing}: {detail}"
    if isinstance(exc, pg_errors.UniqueViolation):
        return StoreConflict(message, sqlstate=sqlstate)
    if isinstance(exc, pg_errors.NumericValueOutOfRange):
        return StoreBadValue(f"a number in the request is out of range ({message})", sqlstate=sqlstate)
    if _nul_character(exc):
        return StoreBadValue(
            f"a text value in the request contains a NUL character (\\u0000), which PostgreSQL cannot "
            f"store ({message})",
            sqlstate=sqlstate,
        )
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return StoreUnavailable(f"PostgreSQL unavailable while {message}", sqlstate=sqlstate)
    return StoreError(message, sqlstate=sqlstate)


def _nul_character(exc: psycopg.Error) -> bool:
    """A NUL in a text value (refused by psycopg) or in a JSON string (refused by PostgreSQL)."""
    if isinstance(exc, pg_errors.UntranslatableCharacter):
        return True
    return isinstance(exc, psycopg.DataError) and "NUL (0x00)" in str(exc)


@contextmanager
def translated(doing: str) -> Iterator[None]:
    """Turn psycopg errors raised inside the block into :class:`StoreError` s (usable around awaits)."""
    try:
        yield
    except psycopg.Error as exc:
        raise from_driver(exc, doing) from exc


def wrap(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Decorate a store coroutine so driver errors leave it as :class:`StoreError` s."""
    doing = f"{fn.__module__.rsplit('.', 1)[-1]}.{fn.__name__}"

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        with translated(doing):
            return await fn(*args, **kwargs)

    return wrapper
