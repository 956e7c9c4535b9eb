"""The canonical form of a request: the one thing the gateway authorizes and forwards.

The path after ``/noetl/`` is read from the raw request target (``raw_path``: nothing decoded yet),
split on ``/`` and each part percent-decoded exactly once. A request is refused (400) when a part is
empty (``a//b``, a trailing ``/``), is ``.`` or ``..`` (literally or encoded), or decodes to
something holding ``/``, ``\\``, a control character, or a ``%`` (double encoding). What remains is
the canonical path: its decoded parts, which the policy classifies, and their re-encoding, which
is forwarded - so the server receives exactly the path that was authorized, and no HTTP client or
framework between them can normalise it into another.

The query is parsed once as well; the flags the policy decides on (``include_data``) are parsed with
:func:`noetl.flags.parse`, the server's parser, and forwarded as ``true``/``false``; a flag given
twice, or with a value that parser refuses, is a 400. Paging values and ids must be whole numbers
up to :data:`MAX_PAGING` (a larger one reached the database as "bigint out of range").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, quote, unquote, urlencode

from noetl import flags

CHECKED_FLAGS: Final = ("include_data",)
PAGING: Final = (
    "offset",
    "limit",
    "page",
    "page_size",
    "since_event_id",
    "as_of_event_id",
    "cursor",
    "since",
    "execution_id",
    "parent_execution_id",
    "catalog_id",
)
MAX_PAGING: Final = 2**63 - 1


class NotCanonical(Exception):
    """The request's path or query cannot be put in one canonical form (answered with 400)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Target:
    """``parts``: the decoded path parts after ``/noetl/``; ``query``: the canonical query pairs."""

    parts: tuple[str, ...]
    query: tuple[tuple[str, str], ...]

    @property
    def path(self) -> str:
        """The decoded path, for the policy and the audit trail."""
        return "/".join(self.parts)

    @property
    def encoded(self) -> str:
        """The path as forwarded: each part percent-encoded (no part can hold a '/')."""
        return "/".join(quote(part, safe="") for part in self.parts)

    @property
    def query_string(self) -> str:
        return urlencode(self.query)

    def get(self, name: str) -> str | None:
        for key, value in self.query:
            if key == name:
                return value
        return None

    def flag(self, name: str) -> bool:
        value = self.get(name)
        return value is not None and flags.parse(value, name)


def target(raw_path: bytes, prefix: bytes, raw_query: bytes) -> Target:
    """The canonical target of a request whose raw path starts with ``prefix`` (``/noetl/``)."""
    if not raw_path.startswith(prefix):
        raise NotCanonical("the path does not start with /noetl/")
    try:
        text = raw_path[len(prefix) :].decode("ascii")
    except UnicodeDecodeError:
        raise NotCanonical("path not canonical: it holds bytes that are not percent-encoded") from None
    parts = tuple(_part(raw) for raw in text.split("/")) if text else ()
    if not parts:
        raise NotCanonical("path not canonical: nothing after /noetl/")
    return Target(parts, _query(raw_query))


def _part(raw: str) -> str:
    if raw == "":
        raise NotCanonical("path not canonical: it has an empty part ('//' or a trailing '/')")
    try:
        decoded = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise NotCanonical("path not canonical: a percent-encoded part is not UTF-8") from None
    if decoded in (".", ".."):
        raise NotCanonical(f"path not canonical: it has a '{decoded}' part")
    if "%2e" in raw.lower():
        raise NotCanonical("path not canonical: it has an encoded '.'")
    for bad, what in (("/", "an encoded '/'"), ("\\", "a backslash"), ("%", "a double-encoded part")):
        if bad in decoded:
            raise NotCanonical(f"path not canonical: it has {what}")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in decoded):
        raise NotCanonical("path not canonical: it has a control character")
    return decoded


def _query(raw: bytes) -> tuple[tuple[str, str], ...]:
    try:
        pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True, strict_parsing=False)
    except ValueError:
        raise NotCanonical("the query string cannot be parsed") from None
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for key, value in pairs:
        if key in CHECKED_FLAGS:
            if key in seen:
                raise NotCanonical(f"query parameter '{key}' is given more than once")
            try:
                value = flags.canonical(flags.parse(value, key))
            except ValueError as exc:
                raise NotCanonical(str(exc)) from None
        elif key in PAGING:
            value = _paging(key, value)
        seen.add(key)
        out.append((key, value))
    return tuple(out)


def _paging(key: str, value: str) -> str:
    text = value.strip()
    if key == "since" and not text.lstrip("-").isdigit():
        return value  # `since` is also a timestamp on some routes; the server checks those
    if not text.isdigit() or int(text) > MAX_PAGING:
        raise NotCanonical(f"query parameter '{key}' must be a whole number from 0 to {MAX_PAGING}")
    return str(int(text))
