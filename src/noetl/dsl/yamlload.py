"""YAML text -> plain JSON-like values, remembering where each value sits in the text.

PyYAML's composer (the C one when available) builds the node tree; this module turns nodes into
plain ``dict``/``list``/scalar values itself so that it can keep each node's start mark. Positions
live in a side table on :class:`Document`, keyed by the identity of each map and list: a map knows
where it starts, where each of its keys sits and where each value starts. Code that rewrites a
tree (the normaliser) copies positions onto new containers with :meth:`Document.adopt`.

Deliberate differences from ``yaml.safe_load``:

* map keys are always strings, taken from the text (``200:`` is ``"200"``, ``on:`` is ``"on"``);
* duplicate keys are an error instead of "last one wins";
* timestamps stay strings (the model holds JSON values only);
* unknown tags (``!foo``) and recursive aliases are errors;
* input limits (:class:`Limits`): the text's size is checked before parsing; the number of values
  the document would have with every alias expanded, and its nesting depth, are counted while the
  values are built (aliases are shared, never copied), and the load stops at the first value over
  a limit - an alias bomb costs only its own text. The error names the limit and the environment
  variable that raises it (:data:`LIMIT_SETTINGS`); entry points call :func:`configure`.

Every failure is a :class:`noetl.errors.PlaybookError` with file, line and column.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Final

import yaml

from noetl.dsl.model import JSON
from noetl.errors import Location, PlaybookError

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Position = tuple[int, int]
_Key = str | int

_TAG = "tag:yaml.org,2002:"
_SCALARS: dict[str, Callable[[yaml.constructor.SafeConstructor, yaml.ScalarNode], object]] = {
    _TAG + "null": yaml.constructor.SafeConstructor.construct_yaml_null,
    _TAG + "bool": yaml.constructor.SafeConstructor.construct_yaml_bool,
    _TAG + "int": yaml.constructor.SafeConstructor.construct_yaml_int,
    _TAG + "float": yaml.constructor.SafeConstructor.construct_yaml_float,
}
_COLLECTION_TAGS = frozenset({_TAG + "map", _TAG + "seq"})

LIMIT_SETTINGS: Final = {
    "max_bytes": "NOETL_YAML_MAX_BYTES",
    "max_nodes": "NOETL_YAML_MAX_NODES",
    "max_depth": "NOETL_YAML_MAX_DEPTH",
}
"""Limit -> the environment variable that sets it (read by the entry points, see :func:`configure`)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """How much YAML one load may take."""

    max_bytes: int = 64 * 1024 * 1024
    """Characters of text (checked before parsing)."""
    max_nodes: int = 2_000_000
    """Values (maps, lists, scalars) with every alias expanded: an alias bomb's real size."""
    max_depth: int = 200
    """Nesting of maps and lists, aliases expanded."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Limits:
        """The limits with any set in ``env`` (:data:`LIMIT_SETTINGS`); PlaybookError for a bad value."""
        values: dict[str, int] = {}
        for f in fields(cls):
            raw = env.get(LIMIT_SETTINGS[f.name], "").strip()
            if raw:
                try:
                    values[f.name] = int(raw)
                    if values[f.name] <= 0:
                        raise ValueError(raw)
                except ValueError:
                    raise PlaybookError(
                        f"{LIMIT_SETTINGS[f.name]}={raw!r} is not a positive integer"
                    ) from None
        return cls(**values)


class InputTooLarge(PlaybookError):
    """The YAML is over one of the :class:`Limits` (HTTP 413)."""

    http_status = 413


_limits = Limits()


def configure(limits: Limits) -> None:
    """Set the limits of every later :func:`load` in this process (entry points only)."""
    global _limits
    _limits = limits


def limits() -> Limits:
    """The limits :func:`load` applies."""
    return _limits


_TEXT_TAGS = frozenset({_TAG + "str", _TAG + "timestamp", _TAG + "binary", _TAG + "value"})


@dataclass(slots=True)
class _Marks:
    """Positions (0-based line, column) of one map or list, its keys and its values."""

    start: _Position
    keys: dict[_Key, _Position] = field(default_factory=dict)
    values: dict[_Key, _Position] = field(default_factory=dict)


class Document:
    """A loaded YAML document: its root value and the position of every map, key and value."""

    def __init__(self, root: JSON, file: str | None) -> None:
        self.root = root
        self.file = file
        self._marks: dict[int, _Marks] = {}
        # Positions are keyed by id(); holding every container keeps ids from being reused.
        self._alive: list[object] = []

    def where(self, container: object, key: _Key | None = None) -> Location:
        """Location of ``container[key]`` (or of the container); the nearest known position."""
        marks = self._marks.get(id(container))
        if marks is None:
            return Location(self.file)
        if key is not None:
            pos = marks.values.get(key) or marks.keys.get(key)
            if pos is not None:
                return self._location(pos)
        return self._location(marks.start)

    def where_key(self, container: object, key: _Key) -> Location:
        """Location of the key ``key`` itself in a map (for unknown-key errors)."""
        marks = self._marks.get(id(container))
        if marks is not None and key in marks.keys:
            return self._location(marks.keys[key])
        return self.where(container, key)

    def line_of(self, container: object, key: _Key) -> int | None:
        """0-based line where ``container[key]`` was written (its key, else its value), if known."""
        marks = self._marks.get(id(container))
        if marks is None:
            return None
        pos = marks.keys.get(key) or marks.values.get(key)
        return pos[0] if pos is not None else None

    def adopt(self, new: object, old: object) -> None:
        """Give a container built by a rewrite the positions of the container it replaces."""
        marks = self._marks.get(id(old))
        if marks is not None and id(new) not in self._marks:
            self._marks[id(new)] = _Marks(marks.start, dict(marks.keys), dict(marks.values))
            self._alive.append(new)

    def adopt_at(self, new: object, container: object, key: _Key | None) -> None:
        """Give a new container the position of ``container[key]`` (e.g. an arc built from a string)."""
        marks = self._marks.get(id(container))
        if marks is None or id(new) in self._marks:
            return
        pos = marks.start if key is None else marks.values.get(key, marks.start)
        self._marks[id(new)] = _Marks(pos)
        self._alive.append(new)

    def place(self, container: object, key: _Key, old: object, old_key: _Key) -> None:
        """Record that ``container[key]`` came from ``old[old_key]`` (a moved value keeps its line)."""
        source = self._marks.get(id(old))
        target = self._marks.get(id(container))
        if source is None or target is None:
            return
        pos = source.values.get(old_key) or source.keys.get(old_key)
        if pos is not None:
            target.values[key] = pos
            target.keys.setdefault(key, source.keys.get(old_key, pos))

    def _location(self, pos: _Position) -> Location:
        return Location(self.file, pos[0] + 1, pos[1] + 1)

    def _remember(self, container: object, marks: _Marks) -> None:
        self._marks[id(container)] = marks
        self._alive.append(container)


def load(text: str, file: str | None = None, limits: Limits | None = None) -> Document:
    """Parse one YAML document into plain values with positions; raise PlaybookError on bad YAML
    (:class:`InputTooLarge` over ``limits``, by default those :func:`configure` set)."""
    limits = limits or _limits
    if len(text) > limits.max_bytes:
        raise InputTooLarge(
            f"the YAML text has {len(text)} characters, more than the limit of {limits.max_bytes} "
            f"(set {LIMIT_SETTINGS['max_bytes']} to raise it)",
            location=Location(file),
        )
    document = Document(None, file)
    try:
        document.root = _Builder(document, limits, yaml.parse(text, Loader=_Loader)).root()
    except yaml.MarkedYAMLError as exc:
        raise PlaybookError(_yaml_message(exc), location=_mark_location(exc, file)) from None
    except yaml.YAMLError as exc:
        raise PlaybookError(f"invalid YAML: {exc}", location=Location(file)) from None
    except RecursionError:
        raise PlaybookError("YAML is nested too deeply", location=Location(file)) from None
    return document


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    parts = [p for p in (exc.context, exc.problem) if p]
    return "invalid YAML: " + (", ".join(parts) if parts else "cannot parse")


def _mark_location(exc: yaml.MarkedYAMLError, file: str | None) -> Location:
    mark = exc.problem_mark or exc.context_mark
    if mark is None:
        return Location(file)
    return Location(file, mark.line + 1, mark.column + 1)


_Event = yaml.events.Event
_Anchored = tuple[JSON, int, int]
"""An anchor's value, its size (values, aliases expanded) and its height (nesting below it)."""


class _Builder:
    """Builds values straight from the parser's events, recording their positions - no node tree
    (the tree of a 20 MB document took more memory than the values themselves; issue 17)."""

    def __init__(self, document: Document, limits: Limits, events: Iterator[_Event]) -> None:
        self.document = document
        self.limits = limits
        self.events = events
        self.constructor = yaml.constructor.SafeConstructor()
        self.resolver = yaml.resolver.Resolver()
        self.anchors: dict[str, _Anchored] = {}
        self.building: set[str] = set()
        """Anchors of the collections being built (an alias to one of them is recursive)."""
        self.nodes = 0
        """Values of the document so far, aliases expanded (each use of an alias counts it whole)."""
        self.depth = 0

    def next(self) -> _Event:
        return next(self.events)

    def root(self) -> JSON:
        """The one document of the stream (None when there is none)."""
        self.next()  # stream start
        event = self.next()
        if isinstance(event, yaml.StreamEndEvent):
            return None
        root, _ = self.value(self.next())  # after the document start
        self.next()  # document end
        event = self.next()
        if not isinstance(event, yaml.StreamEndEvent):
            message = "invalid YAML: expected a single document in the stream, but found another document"
            raise self.error(message, event)
        return root

    def error(self, message: str, event: _Event) -> PlaybookError:
        line, column = _position(event)
        return PlaybookError(message, location=Location(self.document.file, line + 1, column + 1))

    def count(self, event: _Event, size: int) -> None:
        """Add ``size`` expanded values; stop the load over the limit, before anything is expanded."""
        self.nodes += size
        if self.nodes > self.limits.max_nodes:
            raise InputTooLarge(
                f"the YAML document has more than {self.limits.max_nodes} values with its aliases "
                f"expanded (set {LIMIT_SETTINGS['max_nodes']} to raise the limit)",
                location=self.error("", event).location,
            )

    def too_deep(self, event: _Event) -> PlaybookError:
        return InputTooLarge(
            f"the YAML document nests maps and lists more than {self.limits.max_depth} deep "
            f"(set {LIMIT_SETTINGS['max_depth']} to raise the limit)",
            location=self.error("", event).location,
        )

    def value(self, event: _Event) -> tuple[JSON, int]:
        """The value starting at ``event``, and its height (0 for a scalar)."""
        if isinstance(event, yaml.AliasEvent):
            return self.alias(event)
        before = self.nodes
        self.count(event, 1)
        height = 0
        if isinstance(event, yaml.ScalarEvent):
            result: JSON = self.scalar(event)
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            mapping = isinstance(event, yaml.MappingStartEvent)
            tag = self.tag(event, yaml.MappingNode if mapping else yaml.SequenceNode)
            if tag not in _COLLECTION_TAGS:
                raise self.error(f"unsupported YAML tag '{tag}'", event)
            self.depth += 1
            if self.depth > self.limits.max_depth:
                raise self.too_deep(event)
            if event.anchor:
                self.building.add(event.anchor)
            result, height = self.mapping(event) if mapping else self.sequence(event)
            if event.anchor:
                self.building.discard(event.anchor)
            self.depth -= 1
        else:  # the parser never yields anything else here
            raise self.error(f"unexpected YAML event {type(event).__name__}", event)
        if event.anchor:
            self.anchor(event, (result, self.nodes - before, height))
        return result, height

    def alias(self, event: yaml.AliasEvent) -> tuple[JSON, int]:
        # An alias shares the anchored value (never a copy), but counts it whole each time it is
        # used: its expanded size is what consumers would walk.
        found = self.anchors.get(event.anchor or "")
        if found is None:
            if event.anchor in self.building:
                raise self.error("recursive YAML alias is not allowed", event)
            raise self.error(f"undefined YAML alias '*{event.anchor}'", event)
        value, size, height = found
        self.count(event, size)
        if self.depth + height > self.limits.max_depth:
            raise self.too_deep(event)
        return value, height

    def anchor(self, event: _Event, anchored: _Anchored) -> None:
        name = getattr(event, "anchor", None) or ""
        if name in self.anchors:
            raise self.error(f"duplicate YAML anchor '&{name}'", event)
        self.anchors[name] = anchored

    def tag(self, event: _Event, kind: type[yaml.Node]) -> str:
        tag: str | None = getattr(event, "tag", None)
        if tag is None or tag == "!":
            value = event.value if isinstance(event, yaml.ScalarEvent) else None
            implicit = getattr(event, "implicit", None)
            tag = self.resolver.resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
        return str(tag)

    def scalar(self, event: yaml.ScalarEvent) -> JSON:
        tag = self.tag(event, yaml.ScalarNode)
        if tag in _TEXT_TAGS:
            return str(event.value)
        construct = _SCALARS.get(tag)
        if construct is None:
            raise self.error(f"unsupported YAML tag '{tag}'", event)
        node = yaml.ScalarNode(tag, event.value, None, None, event.style)
        try:
            value = construct(self.constructor, node)
        except (ValueError, KeyError, TypeError):
            raise self.error(f"invalid {tag.removeprefix(_TAG)} value '{event.value}'", event) from None
        return value  # type: ignore[return-value]

    def sequence(self, start: _Event) -> tuple[list[JSON], int]:
        items: list[JSON] = []
        marks = _Marks(_position(start))
        self.document._remember(items, marks)
        height = 0
        while not isinstance(event := self.next(), yaml.SequenceEndEvent):
            marks.values[len(items)] = _position(event)
            item, below = self.value(event)
            items.append(item)
            height = max(height, below)
        return items, height + 1

    def mapping(self, start: _Event) -> tuple[dict[str, JSON], int]:
        result: dict[str, JSON] = {}
        marks = _Marks(_position(start))
        self.document._remember(result, marks)
        merged: list[tuple[dict[str, JSON], _Event]] = []
        height = 0
        while not isinstance(key_event := self.next(), yaml.MappingEndEvent):
            key, merge = self.key(key_event)
            value_event = self.next()
            if merge:
                sources, below = self.merge_sources(value_event)
                merged.extend(sources)
                height = max(height, below)
                continue
            if key in result:
                first = marks.keys[key][0] + 1
                raise self.error(f"duplicate key '{key}' (first defined at line {first})", key_event)
            marks.keys[key] = _position(key_event)
            marks.values[key] = _position(value_event)
            result[key], below = self.value(value_event)
            height = max(height, below)
        for source, source_event in merged:
            self.merge(result, marks, source, source_event)
        return result, height + 1

    def key(self, event: _Event) -> tuple[str, bool]:
        """The text of a map key, and whether it is the merge key ``<<``."""
        if isinstance(event, yaml.AliasEvent):
            found = self.anchors.get(event.anchor or "")
            if found is None or isinstance(found[0], (dict, list)):
                raise self.error("map keys must be plain scalars, not maps, lists or aliases of them", event)
            return str(found[0]), False
        if not isinstance(event, yaml.ScalarEvent):
            raise self.error("map keys must be plain scalars, not maps or lists", event)
        if event.anchor:
            self.anchor(event, (self.scalar(event), 1, 0))
        return str(event.value), self.tag(event, yaml.ScalarNode) == _TAG + "merge"

    def merge_sources(self, event: _Event) -> tuple[list[tuple[dict[str, JSON], _Event]], int]:
        events = [event]
        if isinstance(event, yaml.SequenceStartEvent):
            events = []
            while not isinstance(item := self.next(), yaml.SequenceEndEvent):
                events.append(item)
        sources: list[tuple[dict[str, JSON], _Event]] = []
        height = 0
        for item in events:
            value, below = self.value(item)
            if not isinstance(value, dict):
                raise self.error("a YAML merge key '<<' needs a map or a list of maps", item)
            sources.append((value, item))
            height = max(height, below)
        return sources, height

    def merge(self, result: dict[str, JSON], marks: _Marks, source: dict[str, JSON], event: _Event) -> None:
        """``<<: *base``: keys written in the map win over merged ones."""
        for key, value in source.items():
            if key not in result:
                result[key] = value
                marks.keys[key] = marks.values[key] = _position(event)


def _position(event: _Event) -> _Position:
    mark = event.start_mark
    return (mark.line, mark.column) if mark is not None else (0, 0)
