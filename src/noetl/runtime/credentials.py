"""Credential stores, and the playbook keychain built on them (REFERENCE §9, DECISIONS 22).

A credential is ``{"type": str, "data": {...}}`` found by name. The task runner asks a
:class:`CredentialStore` for the credentials its tasks name in ``auth``; the local runtime uses
:class:`FileCredentials` (``--credentials FILE`` / ``NOETL_CREDENTIALS_FILE``), tests use
:class:`MemoryCredentials`, and the distributed runtime adapts its PostgreSQL store to the same
protocol. Errors name the credential and the names that do exist - never a value.

A playbook's root ``keychain`` declares named secrets that templates read as
``{{ keychain.<name>.<field> }}`` and that ``auth`` may name. :class:`Keychain` resolves the kinds
this runtime supports: ``credential`` (``credential: <name>``: that credential's data), ``static``
(``map`` or ``data``: a literal map, templates allowed), ``bearer`` (``token``) and ``oauth2``
(client credentials against ``endpoint``, cached per ``scope``: see :mod:`noetl.runtime.tokens`).
Other kinds fail with a clear error when used.

Every lookup carries a :class:`Use` - which execution, playbook and step asks - so a store can
refuse a credential outside its scope (catalog path patterns) and write the read to its audit trail.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from noetl.dsl import templates, yamlload
from noetl.dsl.model import JSON
from noetl.errors import CredentialError, Location, NoetlError, UsageError
from noetl.runtime import tokens

Credential = Mapping[str, JSON]
"""``{"type": str, "data": {field: value}}``."""

_ENTRY_META: Final = frozenset({"name", "type", "data", "description", "tags"})
_SUPPORTED_KEYCHAIN_KINDS: Final = ("credential", "static", "bearer", "oauth2")
_SCOPES: Final = {
    "local": "local",
    "execution": "local",
    "global": "global",
    "catalog": "global",
    "shared": "shared",
}


@dataclass(frozen=True, slots=True)
class Use:
    """Who asks for a credential: the execution, the playbook's catalog path and the step."""

    execution_id: str | None = None
    playbook_path: str | None = None
    step: str | None = None
    root_execution_id: str | None = None


class CredentialStore(Protocol):
    """Where the task runner finds credentials by name."""

    async def get(self, name: str, use: Use | None = None) -> Credential:
        """``{"type", "data"}`` of the credential ``name``; CredentialError when there is none or
        when ``use`` is outside the credential's scope."""
        ...


class NoCredentials:
    """The store when none was configured: every lookup fails and says how to configure one."""

    async def get(self, name: str, use: Use | None = None) -> Credential:
        raise CredentialError(
            f"credential '{name}' is needed but no credentials are configured; "
            "pass --credentials FILE or set NOETL_CREDENTIALS_FILE"
        )


class MemoryCredentials:
    """Credentials held in memory: ``MemoryCredentials({name: {type, data}})``; ``store[name] = ...`` adds.

    Not a dict subclass on purpose: the store's ``get`` is a coroutine, dict's is not.
    """

    def __init__(self, entries: Mapping[str, Credential] | None = None) -> None:
        self._entries: dict[str, Credential] = {}
        for name, entry in (entries or {}).items():
            self[name] = entry

    def __setitem__(self, name: str, entry: Credential) -> None:
        self._entries[name] = _credential(entry, f"credential '{name}'")

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return sorted(self._entries)

    async def get(self, name: str, use: Use | None = None) -> Credential:
        entry = self._entries.get(name)
        if entry is None:
            raise CredentialError(f"credential '{name}' not found; {_known(self._entries)}")
        return _copy(entry)


class FileCredentials:
    """Credentials read once from a YAML or JSON file.

    Accepted shapes: a map ``{name: {type, data}}``, or the server's import format, a list of
    ``{name, type, data}``. ``type`` defaults to ``generic``; ``data`` must be a map.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._entries = _load(self.path)

    def names(self) -> list[str]:
        return sorted(self._entries)

    async def get(self, name: str, use: Use | None = None) -> Credential:
        entry = self._entries.get(name)
        if entry is None:
            raise CredentialError(f"credential '{name}' is not in {self.path}; {_known(self._entries)}")
        return _copy(entry)


def _known(entries: Mapping[str, object]) -> str:
    if not entries:
        return "no credentials are defined"
    return "known credentials: " + ", ".join(sorted(entries))


def _copy(entry: Credential) -> Credential:
    data = entry["data"]
    return {"type": entry["type"], "data": dict(data) if isinstance(data, dict) else data}


def _credential(entry: object, what: str) -> Credential:
    """A validated ``{type, data}``; CredentialError naming ``what`` otherwise."""
    if not isinstance(entry, Mapping):
        raise CredentialError(f"{what} must be a map with 'type' and 'data'")
    kind = entry.get("type", "generic")
    data = entry.get("data")
    if not isinstance(kind, str) or not kind:
        raise CredentialError(f"{what}: 'type' must be a non-empty string")
    if not isinstance(data, Mapping):
        raise CredentialError(f"{what}: 'data' must be a map of fields")
    return {"type": kind, "data": dict(data)}


# ---- reading a credentials file ---------------------------------------------------------------------


def _load(path: str) -> dict[str, Credential]:
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError as exc:
        raise UsageError(
            f"cannot read credentials file {path}: {exc.strerror or exc}", field="--credentials"
        ) from None
    try:
        document = yamlload.load(text, path)
    except NoetlError as exc:  # YAML syntax: keep the line and column it found
        raise UsageError(f"credentials file: {exc.message}", location=exc.location) from None
    return _entries(document)


def _entries(document: yamlload.Document) -> dict[str, Credential]:
    root = document.root
    if root is None:
        return {}
    pairs: Iterable[tuple[str, object, Location]]
    if isinstance(root, dict):
        pairs = ((name, entry, document.where(root, name)) for name, entry in root.items())
    elif isinstance(root, list):
        pairs = (_list_entry(document, root, index) for index in range(len(root)))
    else:
        raise UsageError(
            "a credentials file must hold a map {name: {type, data}} or a list of {name, type, data}",
            location=document.where(root),
        )
    entries: dict[str, Credential] = {}
    for name, entry, where in pairs:
        if name in entries:
            raise UsageError(f"credential '{name}' is defined twice", location=where)
        try:
            entries[name] = _credential(entry, f"credential '{name}'")
        except CredentialError as exc:
            raise UsageError(exc.message, location=where) from None
    return entries


def _list_entry(document: yamlload.Document, root: list[JSON], index: int) -> tuple[str, object, Location]:
    entry = root[index]
    where = document.where(root, index)
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
        raise UsageError(f"credential entry {index + 1} needs a 'name' (a string)", location=where)
    name = str(entry["name"])
    unknown = sorted(set(entry) - _ENTRY_META)
    if unknown:
        raise UsageError(
            f"credential '{name}': unknown keys {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(_ENTRY_META))}",
            location=where,
        )
    return name, entry, where


# ---- the playbook keychain -------------------------------------------------------------------------

_MENTION = re.compile(r"\bkeychain\b")
_KEYCHAIN_NAME = re.compile(r"""\bkeychain\s*(?:\.\s*([A-Za-z_]\w*)|\[\s*['"]([^'"]+)['"]\s*\])""")


def keychain_names(value: object, declared: Iterable[str]) -> set[str]:
    """Declared keychain names that templates inside ``value`` read (``keychain.<name>``...).

    A template that reads the keychain in a way the names cannot be seen in (``keychain[var]``)
    counts as reading every entry.
    """
    names: set[str] = set()
    dynamic = False
    for text in _strings(value):
        if "keychain" not in text or not _MENTION.search(text) or not templates.is_template(text):
            continue
        found = {a or b for a, b in _KEYCHAIN_NAME.findall(text)}
        names |= found
        dynamic = dynamic or not found
    declared = set(declared)
    return declared if dynamic else names & declared


def _strings(value: object) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


class Keychain:
    """Resolves a playbook's keychain entries for one command, each at most once.

    ``resolved`` (name -> data) is what templates see as ``keychain``; the caller puts that same dict
    into its render context and learns the secrets from :attr:`credentials`.
    """

    def __init__(
        self,
        entries: Iterable[Mapping[str, JSON]],
        store: CredentialStore,
        use: Use | None = None,
        cache: tokens.TokenCache | None = None,
    ) -> None:
        self._entries = {str(entry.get("name")): entry for entry in entries}
        self._store = store
        self._use = use or Use()
        self._cache = cache if cache is not None else tokens.SHARED_CACHE
        self.resolved: dict[str, JSON] = {}
        self.credentials: dict[str, Credential] = {}
        self._resolving: set[str] = set()

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return list(self._entries)

    async def credential(self, name: str, context: Mapping[str, object]) -> Credential:
        """Keychain entry ``name`` as a credential ``{type, data}`` (for ``auth: <name>``)."""
        found = self.credentials.get(name)
        if found is None:
            if name in self._resolving:
                raise CredentialError(f"keychain entry '{name}' refers to itself")
            self._resolving.add(name)
            try:
                found = await self._resolve(name, context)
            finally:
                self._resolving.discard(name)
            self.credentials[name] = found
            self.resolved[name] = found["data"]
        return found

    async def resolve(self, names: Iterable[str], context: Mapping[str, object]) -> None:
        """Make ``keychain.<name>`` available for each declared name in ``names``."""
        for name in names:
            if name in self._entries and name not in self.credentials:
                await self.credential(name, context)

    async def _resolve(self, name: str, context: Mapping[str, object]) -> Credential:
        entry = self._entries[name]
        kind = entry.get("kind") or ("credential" if "credential" in entry else None)
        if kind == "credential":
            ref = entry.get("credential") or entry.get("key")
            if not isinstance(ref, str):
                raise CredentialError(
                    f"keychain entry '{name}' of kind credential needs 'credential: <name>'"
                )
            return await self._store.get(ref, self._use)
        if kind == "oauth2":
            return await self._oauth2(name, entry, context)
        if kind == "static":
            data = await self._rendered(entry.get("map", entry.get("data")), name, context)
            if not isinstance(data, dict):
                raise CredentialError(f"keychain entry '{name}' of kind static needs 'map' (a map of values)")
            return {"type": str(entry.get("type") or "static"), "data": data}
        if kind == "bearer":
            token = await self._rendered(entry.get("token"), name, context)
            if not isinstance(token, str) or not token:
                raise CredentialError(f"keychain entry '{name}' of kind bearer needs 'token' (a string)")
            return {"type": "bearer", "data": {"token": token, "access_token": token}}
        supported = ", ".join(_SUPPORTED_KEYCHAIN_KINDS)
        raise CredentialError(
            f"keychain kind '{kind}' (entry '{name}') is not supported by this runtime yet; "
            f"supported kinds: {supported}"
        )

    async def _oauth2(
        self, name: str, entry: Mapping[str, JSON], context: Mapping[str, object]
    ) -> Credential:
        spec = await self._rendered(
            {key: entry.get(key) for key in ("endpoint", "url", "method", "headers", "data", "json")},
            name,
            context,
        )
        assert isinstance(spec, dict)
        spec.update({key: entry[key] for key in ("token_field", "ttl_field") if key in entry})
        key = self.cache_key(name, entry)
        token = await self._cache.get(key, lambda: tokens.fetch_token(name, spec))
        return {"type": "oauth2", "data": dict(token.data)}

    def cache_key(self, name: str, entry: Mapping[str, JSON]) -> str:
        """``<name>:<playbook>:<execution>`` (local), ``...:global`` or ``...:shared:<root>``."""
        raw = str(entry.get("scope") or "local")
        scope = _SCOPES.get(raw)
        if scope is None:
            raise CredentialError(
                f"keychain entry '{name}': scope '{raw}' is not one of local, global, shared"
            )
        use = self._use
        base = f"{name}:{use.playbook_path or '-'}"
        if scope == "global":
            return f"{base}:global"
        if scope == "shared":
            return f"{base}:shared:{use.root_execution_id or use.execution_id or '-'}"
        return f"{base}:{use.execution_id or '-'}"

    async def _rendered(self, value: JSON, name: str, context: Mapping[str, object]) -> object:
        """``value`` rendered; entries it reads (``{{ keychain.other.x }}``) are resolved first."""
        await self.resolve(keychain_names(value, self._entries), context)
        try:
            return templates.render(value, context)
        except NoetlError as exc:
            raise CredentialError(f"keychain entry '{name}': {exc.message}") from None
