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

from collections.abc import Callable, Mapping
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
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        raise PlaybookError(_yaml_message(exc), location=_mark_location(exc, file)) from None
    except yaml.YAMLError as exc:
        raise PlaybookError(f"invalid YAML: {exc}", location=Location(file)) from None
    document = Document(None, file)
    if node is None:
        return document
    try:
        document.root = _Builder(document, limits).value(node)
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


class _Builder:
    """Walks the node tree once, building values and recording their positions."""

    def __init__(self, document: Document, limits: Limits) -> None:
        self.document = document
        self.limits = limits
        self.constructor = yaml.constructor.SafeConstructor()
        self.done: dict[int, JSON] = {}
        self.building: set[int] = set()
        self.sizes: dict[int, tuple[int, int]] = {}
        """Node id -> (values, depth) of its value with aliases expanded."""
        self.nodes = 0
        """Values of the document so far, aliases expanded (each use of an alias counts it whole)."""
        self.depth = 0

    def count(self, node: yaml.Node, size: int) -> None:
        """Add ``size`` expanded values; stop the load over the limit, before anything is expanded."""
        self.nodes += size
        if self.nodes > self.limits.max_nodes:
            raise InputTooLarge(
                f"the YAML document has more than {self.limits.max_nodes} values with its aliases "
                f"expanded (set {LIMIT_SETTINGS['max_nodes']} to raise the limit)",
                location=self.error("", node).location,
            )

    def too_deep(self, node: yaml.Node) -> PlaybookError:
        return InputTooLarge(
            f"the YAML document nests maps and lists more than {self.limits.max_depth} deep "
            f"(set {LIMIT_SETTINGS['max_depth']} to raise the limit)",
            location=self.error("", node).location,
        )

    def error(self, message: str, node: yaml.Node) -> PlaybookError:
        mark = node.start_mark
        return PlaybookError(message, location=Location(self.document.file, mark.line + 1, mark.column + 1))

    def value(self, node: yaml.Node) -> JSON:
        # Aliases compose to the very same node object: build it once and share the value, but
        # count it whole each time it is used (its expanded size is what consumers would walk).
        key = id(node)
        if key in self.done:
            size, height = self.sizes[key]
            self.count(node, size)
            if self.depth + height > self.limits.max_depth:
                raise self.too_deep(node)
            return self.done[key]
        if key in self.building:
            raise self.error("recursive YAML alias is not allowed", node)
        self.building.add(key)
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _COLLECTION_TAGS:
            raise self.error(f"unsupported YAML tag '{node.tag}'", node)
        before = self.nodes
        self.count(node, 1)
        height = 0
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            self.depth += 1
            if self.depth > self.limits.max_depth:
                raise self.too_deep(node)
            result: JSON = self.mapping(node) if isinstance(node, yaml.MappingNode) else self.sequence(node)
            self.depth -= 1
            height = 1 + max((self.sizes[id(child)][1] for child in _children(node)), default=0)
        else:
            result = self.scalar(node)
        self.building.discard(key)
        self.done[key] = result
        self.sizes[key] = (self.nodes - before, height)
        return result

    def scalar(self, node: yaml.Node) -> JSON:
        if node.tag in _TEXT_TAGS:
            return str(node.value)
        construct = _SCALARS.get(node.tag)
        if construct is None or not isinstance(node, yaml.ScalarNode):
            raise self.error(f"unsupported YAML tag '{node.tag}'", node)
        try:
            value = construct(self.constructor, node)
        except (ValueError, KeyError, TypeError):
            raise self.error(f"invalid {node.tag.removeprefix(_TAG)} value '{node.value}'", node) from None
        return value  # type: ignore[return-value]

    def sequence(self, node: yaml.SequenceNode) -> list[JSON]:
        items: list[JSON] = []
        marks = _Marks(_position(node))
        self.document._remember(items, marks)
        for index, child in enumerate(node.value):
            marks.values[index] = _position(child)
            items.append(self.value(child))
        return items

    def mapping(self, node: yaml.MappingNode) -> dict[str, JSON]:
        result: dict[str, JSON] = {}
        marks = _Marks(_position(node))
        self.document._remember(result, marks)
        merged: list[tuple[dict[str, JSON], yaml.Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _TAG + "merge":
                merged.extend(self.merge_sources(value_node))
                continue
            key = self.key(key_node)
            if key in result:
                first = marks.keys[key][0] + 1
                raise self.error(f"duplicate key '{key}' (first defined at line {first})", key_node)
            marks.keys[key] = _position(key_node)
            marks.values[key] = _position(value_node)
            result[key] = self.value(value_node)
        for source, source_node in merged:
            self.merge(result, marks, source, source_node)
        return result

    def key(self, node: yaml.Node) -> str:
        if not isinstance(node, yaml.ScalarNode):
            raise self.error("map keys must be plain scalars, not maps or lists", node)
        return str(node.value)

    def merge_sources(self, node: yaml.Node) -> list[tuple[dict[str, JSON], yaml.Node]]:
        nodes = node.value if isinstance(node, yaml.SequenceNode) else [node]
        sources: list[tuple[dict[str, JSON], yaml.Node]] = []
        for item in nodes:
            value = self.value(item)
            if not isinstance(value, dict):
                raise self.error("a YAML merge key '<<' needs a map or a list of maps", item)
            sources.append((value, item))
        return sources

    def merge(self, result: dict[str, JSON], marks: _Marks, source: dict[str, JSON], node: yaml.Node) -> None:
        """``<<: *base``: keys written in the map win over merged ones."""
        for key, value in source.items():
            if key not in result:
                result[key] = value
                marks.keys[key] = marks.values[key] = _position(node)


def _children(node: yaml.Node) -> list[yaml.Node]:
    """The value nodes a collection node was built from (a map's values and merge sources)."""
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    found: list[yaml.Node] = []
    for _key, value in node.value:
        found.extend(
            value.value if isinstance(value, yaml.SequenceNode) and _key.tag == _TAG + "merge" else [value]
        )
    return found


def _position(node: yaml.Node) -> _Position:
    return (node.start_mark.line, node.start_mark.column)
