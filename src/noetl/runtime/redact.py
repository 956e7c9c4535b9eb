"""Masking secret values in results, errors and variables before they leave the task runner.

DECISIONS 22: resolved secret values never appear in events, results, logs or error messages; they
are replaced by ``***``. A :class:`Redactor` learns the secrets of one command (the data of every
credential and keychain entry it resolved) and replaces each occurrence inside any string of a JSON
value (map values, list items, nested; keys are left alone).

What counts as a secret: every string value of credential data, and the text of other non-boolean
scalars (``str(1234)``), at least :data:`MIN_SECRET_LENGTH` characters long - shorter values would
mask innocent text everywhere. Fields that describe *where* to connect rather than *how to prove
who you are* (:data:`PUBLIC_FIELDS`: host, port, user, database, ...) are not secrets: masking
``postgres`` or ``localhost`` in every result would corrupt data and protect nothing. Three of them
carry credentials often enough to be looked into (:data:`CARRIER_FIELDS`): a ``url``/``endpoint``
is a secret when it has more than a scheme and a host (a path, a query, user info: webhook URLs,
``?token=``, ``user:pass@``), and its password and query values are secrets too; a ``header`` that
is more than a header name (``Authorization: Bearer x``, a map of headers) is a secret, and so are
the values in it (and the token after ``Bearer``/``Basic``).

The redactor follows a secret into the forms it takes on the way out (:func:`derived_forms`):
percent-encoded (URLs, form bodies), JSON-escaped (a secret quoted inside JSON text), base64 (and
base64 of ``user:secret`` for each user-like field of the same data: an echoed Basic-auth header).
Keys of maps are masked like values (a secret used as a dict key or an SQL column alias).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Final
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit, urlunsplit

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

CARRIER_FIELDS: Final = frozenset({"url", "endpoint", "header", "headers"})
"""Public-looking fields that often carry a credential; see the module docstring."""

USER_FIELDS: Final = frozenset({"user", "username", "db_user", "login", "client_id", "sf_user", "access_key"})
"""Fields whose value may precede a secret in ``user:secret`` (HTTP Basic auth)."""


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
        """Learn one secret string and its derived forms (ignored when shorter than
        :data:`MIN_SECRET_LENGTH`)."""
        if len(secret) >= MIN_SECRET_LENGTH and secret not in self._secrets:
            self._secrets.add(secret)
            self._secrets.update(form for form in derived_forms(secret) if len(form) >= MIN_SECRET_LENGTH)
            self._pattern = None

    def add_data(self, data: JSON | Mapping[str, JSON]) -> None:
        """Learn the secrets inside credential or keychain data (see the module docstring)."""
        if isinstance(data, Mapping):
            secrets: list[str] = []
            for key, value in data.items():
                name = str(key).lower()
                if name in CARRIER_FIELDS:
                    for secret in _carried(name, value):
                        self.add_secret(secret)
                        secrets.append(secret)
                elif name not in PUBLIC_FIELDS:
                    self.add_data(value)
                    secrets.extend(_strings(value))
            for user in (v for k, v in data.items() if str(k).lower() in USER_FIELDS and isinstance(v, str)):
                for secret in secrets:
                    self.add_secret(_b64(f"{user}:{secret}"))
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
            if any(pattern.search(key) for key in value if isinstance(key, str)):
                return self._walk_keys(value, pattern)
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

    def _walk_keys(self, value: dict[str, JSON], pattern: re.Pattern[str]) -> JSON:
        """A map some of whose keys hold a secret: keys masked too (``***``, ``***#2``... when
        several keys would collide)."""
        masked: dict[str, JSON] = {}
        for key, item in value.items():
            new_key = pattern.sub(MASK, key) if isinstance(key, str) else key
            if new_key in masked:
                number = 2
                while f"{new_key}#{number}" in masked:
                    number += 1
                new_key = f"{new_key}#{number}"
            masked[new_key] = self._walk(item, pattern)
        return masked


def derived_forms(secret: str) -> Iterator[str]:
    """The forms a secret takes in transit: percent-encoded, JSON-escaped, base64 (standard and
    URL-safe, with and without padding). Forms equal to the secret are left to the caller to skip."""
    for form in (
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    ):
        if form != secret:
            yield form
    encoded = _b64(secret)
    yield encoded
    yield encoded.rstrip("=")
    urlsafe = base64.urlsafe_b64encode(secret.encode()).decode()
    if urlsafe != encoded:
        yield urlsafe
        yield urlsafe.rstrip("=")


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _strings(value: JSON) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _carried(name: str, value: JSON) -> list[str]:
    """The secrets a ``url``/``endpoint``/``header`` field carries (see the module docstring)."""
    if name.startswith("header"):
        if isinstance(value, str) and not any(c in value for c in ": \t"):
            return []  # just a header's name (the ``header`` credential type)
        found: list[str] = []
        texts = list(_strings(value))
        if isinstance(value, str):
            texts.append(value.partition(":")[2].strip())
        for text in texts:
            found.append(text)
            scheme, _, token = text.partition(" ")
            if token and scheme.lower() in ("bearer", "basic", "token", "apikey"):
                found.append(token.strip())
        return found
    if not isinstance(value, str):
        return list(_strings(value))
    try:
        parts = urlsplit(value)
    except ValueError:
        return [value]
    found = [v for _, v in parse_qsl(parts.query, keep_blank_values=False)]
    if parts.password:
        found.append(parts.password)
    if parts.path.strip("/"):  # a webhook-style URL: the path is the credential
        found.append(parts.path)
        found.append(urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")))
    if found or parts.username or parts.fragment or not parts.netloc:
        found.append(value)
    return found
