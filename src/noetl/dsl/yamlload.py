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
* unknown tags (``!foo``) and recursive aliases are errors.

Every failure is a :class:`noetl.errors.PlaybookError` with file, line and column.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

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


def load(text: str, file: str | None = None) -> Document:
    """Parse one YAML document into plain values with positions; raise PlaybookError on bad YAML."""
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
        document.root = _Builder(document).value(node)
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

    def __init__(self, document: Document) -> None:
        self.document = document
        self.constructor = yaml.constructor.SafeConstructor()
        self.done: dict[int, JSON] = {}
        self.building: set[int] = set()

    def error(self, message: str, node: yaml.Node) -> PlaybookError:
        mark = node.start_mark
        return PlaybookError(message, location=Location(self.document.file, mark.line + 1, mark.column + 1))

    def value(self, node: yaml.Node) -> JSON:
        # Aliases compose to the very same node object: build it once and share the value.
        key = id(node)
        if key in self.done:
            return self.done[key]
        if key in self.building:
            raise self.error("recursive YAML alias is not allowed", node)
        self.building.add(key)
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _COLLECTION_TAGS:
            raise self.error(f"unsupported YAML tag '{node.tag}'", node)
        if isinstance(node, yaml.MappingNode):
            result: JSON = self.mapping(node)
        elif isinstance(node, yaml.SequenceNode):
            result = self.sequence(node)
        else:
            result = self.scalar(node)
        self.building.discard(key)
        self.done[key] = result
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


def _position(node: yaml.Node) -> _Position:
    return (node.start_mark.line, node.start_mark.column)
