"""Masking secret values in results, errors and variables before they leave the task runner.

DECISIONS 22: resolved secret values never appear in events, results, logs or error messages; they
are replaced by ``***``. A :class:`Redactor` learns the secrets of one command (the data of every
credential and keychain entry it resolved) and replaces each occurrence inside any string of a JSON
value (map values, list items, nested; keys are left alone).

What counts as a secret: every string value of credential data, and the text of other non-boolean
scalars (``str(1234)``), at least :data:`MIN_SECRET_LENGTH` characters long - shorter values would
mask innocent text everywhere. Fields that describe *where* to connect rather than *how to prove
who you are* (:data:`PUBLIC_FIELDS`: host, port, user, database, ...) are not secrets: masking
``postgres`` or ``localhost`` in every result would corrupt data and protect nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

from noetl.dsl.model import JSON

MASK: Final = "***"
MIN_SECRET_LENGTH: Final = 3

PUBLIC_FIELDS: Final = frozenset(
    {
        "type",
        "name",
        "description",
        "host",
        "hostname",
        "db_host",
        "port",
        "db_port",
        "user",
        "username",
        "db_user",
        "database",
        "dbname",
        "db_name",
        "schema",
        "sslmode",
        "region",
        "url",
        "endpoint",
        "endpoint_url",
        "access_key_id",
        "aws_access_key_id",
        "scope",
        "header",
        "sf_account",
        "sf_user",
        "sf_warehouse",
        "sf_database",
        "sf_schema",
        "sf_role",
    }
)
"""Credential data fields whose values are not treated as secrets (compared case-insensitively)."""


class Redactor:
    """Replaces known secret values by ``***`` inside JSON values and text."""

    __slots__ = ("_pattern", "_secrets")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        for secret in secrets:
            self.add_secret(secret)

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def add_secret(self, secret: str) -> None:
        """Learn one secret string (ignored when shorter than :data:`MIN_SECRET_LENGTH`)."""
        if len(secret) >= MIN_SECRET_LENGTH and secret not in self._secrets:
            self._secrets.add(secret)
            self._pattern = None

    def add_data(self, data: JSON | Mapping[str, JSON]) -> None:
        """Learn the secrets inside credential or keychain data (see the module docstring)."""
        if isinstance(data, Mapping):
            for key, value in data.items():
                if str(key).lower() not in PUBLIC_FIELDS:
                    self.add_data(value)
        elif isinstance(data, list):
            for item in data:
                self.add_data(item)
        elif isinstance(data, str):
            self.add_secret(data)
        elif isinstance(data, int | float) and not isinstance(data, bool):
            self.add_secret(str(data))

    def redact(self, value: JSON) -> JSON:
        """``value`` with every secret inside its strings masked; unchanged parts are shared, not copied."""
        if not self._secrets:
            return value
        return self._walk(value, self._compiled())

    def redact_text(self, text: str) -> str:
        if not self._secrets:
            return text
        return self._compiled().sub(MASK, text)

    def _compiled(self) -> re.Pattern[str]:
        if self._pattern is None:
            # Longest first, so a secret that contains another one is masked whole.
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(secret) for secret in ordered))
        return self._pattern

    def _walk(self, value: JSON, pattern: re.Pattern[str]) -> JSON:
        if isinstance(value, str):
            return pattern.sub(MASK, value)
        if isinstance(value, dict):
            copy: dict[str, JSON] | None = None
            for key, item in value.items():
                new = self._walk(item, pattern)
                if new is not item:
                    copy = copy if copy is not None else dict(value)
                    copy[key] = new
            return value if copy is None else copy
        if isinstance(value, list):
            items: list[JSON] | None = None
            for index, item in enumerate(value):
                new = self._walk(item, pattern)
                if new is not item:
                    items = items if items is not None else list(value)
                    items[index] = new
            return value if items is None else items
        return value
