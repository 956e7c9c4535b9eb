"""How templates see stored step results, and how template values turn back into JSON.

A step's result is stored as plain JSON. Templates reach it through a view, which gives the readings the
spec promises without copying the value:

* :class:`StepView` - ``{{ s.field }}``, ``{{ s.data.field }}`` and ``{{ s.result.field }}`` are the same
  field (DECISIONS 7). ``data`` and ``result`` are aliases of the whole result unless the result has its
  own key of that name: synthetic aliases never hide real fields.
* :class:`LoopView` - a loop step's ``{results, stats}`` (DECISIONS 19): ``.data`` is ``results``, iterating,
  indexing and ``length`` work on ``results``, and ``stats.success`` is an alias of ``stats.succeeded``.

:func:`plain` is the way back: it unwraps views and turns what Jinja expressions build (tuples,
generators, dict views, Markup, undefined values) into JSON types, copying a container only when something
inside it changed.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from typing import Final

from noetl.errors import TemplateError

MISSING: Final = object()
"""Returned by :meth:`ResultView.field` when the view has no such field."""


class ResultView:
    """Base of the views: wraps one stored result dict and answers field lookups with aliases."""

    __slots__ = ("_value",)

    def __init__(self, value: dict[str, object]) -> None:
        self._value = value

    @property
    def value(self) -> dict[str, object]:
        """The wrapped result, exactly as stored."""
        return self._value

    def field(self, key: object) -> object:
        """The value templates see for ``view.key`` / ``view[key]``, or :data:`MISSING`."""
        return self._value.get(key, MISSING) if isinstance(key, str) else MISSING

    def get(self, key: str, default: object = None) -> object:
        found = self.field(key)
        return default if found is MISSING else found

    def keys(self) -> KeysView[str]:
        return self._value.keys()

    def values(self) -> ValuesView[object]:
        return self._value.values()

    def items(self) -> ItemsView[str, object]:
        return self._value.items()

    def __getitem__(self, key: object) -> object:
        found = self.field(key)
        if found is MISSING:
            raise KeyError(key)
        return found

    def __eq__(self, other: object) -> bool:
        return self._value == (other.value if isinstance(other, ResultView) else other)

    __hash__ = None  # type: ignore[assignment]  # mutable underlying value, like dict

    def __repr__(self) -> str:
        # Text templates print views with str(); show the stored value, as a plain dict would print.
        return repr(self._value)


class _MappingView(ResultView, Mapping[str, object]):
    """A view that is also a Mapping of the stored keys (so ``items``, ``dictsort``, ``is mapping`` work)."""

    __slots__ = ()

    def __iter__(self) -> Iterator[str]:
        return iter(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __contains__(self, key: object) -> bool:
        return key in self._value

    def __reversed__(self) -> Iterator[str]:
        return reversed(self._value)


class StepView(_MappingView):
    """A step's result with ``data`` and ``result`` aliases of itself (DECISIONS 7)."""

    __slots__ = ()

    def field(self, key: object) -> object:
        found = super().field(key)
        if found is MISSING and key in ("data", "result"):
            return self
        return found


class TaskOutputView(StepView):
    """``output`` in a pipeline task's own ``set``: the task's result data, as upstream reads it, with
    the envelope's fields (``status``, ``error``, ``meta``...) behind it for names the data lacks."""

    __slots__ = ("_envelope",)

    def __init__(self, data: dict[str, object], envelope: Mapping[str, object]) -> None:
        super().__init__(data)
        self._envelope = envelope

    def field(self, key: object) -> object:
        found = super().field(key)
        if found is MISSING and isinstance(key, str):
            return self._envelope.get(key, MISSING)
        return found


def task_output_view(envelope: Mapping[str, object]) -> object:
    """What a pipeline task's ``set`` sees as ``output``: a :class:`TaskOutputView` when the task's
    data is a map, else the envelope itself (``output.data`` is then the scalar or list)."""
    data = envelope.get("data")
    return TaskOutputView(data, envelope) if type(data) is dict else envelope


class StatsView(_MappingView):
    """A loop's ``stats``, where ``success`` is accepted for ``succeeded`` (DECISIONS 19)."""

    __slots__ = ()

    def field(self, key: object) -> object:
        found = super().field(key)
        if found is MISSING and key == "success":
            return super().field("succeeded")
        return found


class LoopView(ResultView):
    """A loop step's ``{results, stats}`` that also behaves as the list of its results (DECISIONS 19)."""

    __slots__ = ()

    @property
    def results(self) -> list[object]:
        results = self._value["results"]
        if type(results) is dict and "$results" in results:
            ref = results["$results"]
            count = ref.get("count") if isinstance(ref, dict) else "?"
            step = ref.get("step") if isinstance(ref, dict) else "?"
            raise TemplateError(
                f"the {count} results of loop step '{step}' are kept in the result store (more than the "
                "inline limit): tasks of later steps get them, but routing conditions and 'set' cannot "
                "read them; use its 'stats' there"
            )
        return results if isinstance(results, list) else []

    def field(self, key: object) -> object:
        if isinstance(key, int) and not isinstance(key, bool):
            return self._item(key)
        if key == "results":
            return self.results  # raises for results kept in the result store
        found = super().field(key)
        if found is MISSING and key == "data":
            return self.results
        if found is MISSING and key == "result":
            return self
        if key == "stats" and isinstance(found, dict):
            return StatsView(found)
        return found

    def _item(self, index: int) -> object:
        results = self.results
        return results[index] if -len(results) <= index < len(results) else MISSING

    def __iter__(self) -> Iterator[object]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __contains__(self, item: object) -> bool:
        return item in self.results

    def __reversed__(self) -> Iterator[object]:
        return reversed(self.results)


def is_loop_result(value: dict[str, object]) -> bool:
    """The engine stores a loop step's result as a dict of exactly ``results`` and ``stats``."""
    return len(value) == 2 and "results" in value and "stats" in value


def result_view(value: object) -> object:
    """Wrap a step's stored result for template access; values that are not dicts are returned as is."""
    if type(value) is not dict:
        return value
    return LoopView(value) if is_loop_result(value) else StepView(value)


_SCALARS: Final = frozenset({str, int, float, bool, type(None)})


def plain(value: object) -> object:
    """``value`` as JSON types, sharing every part that already is one.

    Strict undefined values raise their undefined error here; lenient ones become None.
    Raises TypeError for values that have no JSON form (functions, macros, arbitrary objects).
    """
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict:
        return _plain_dict(value)  # type: ignore[arg-type]
    if kind is list:
        return _plain_list(value)  # type: ignore[arg-type]
    return _plain_other(value)


def _plain_dict(value: dict[object, object]) -> dict[object, object]:
    copy: dict[object, object] | None = None
    for key, item in value.items():
        if type(item) in _SCALARS:
            continue  # the common case, checked inline: big results are mostly scalars
        converted = plain(item)
        if converted is not item:
            if copy is None:
                copy = dict(value)
            copy[key] = converted
    return value if copy is None else copy


def _plain_list(value: list[object]) -> list[object]:
    copy: list[object] | None = None
    for index, item in enumerate(value):
        if type(item) in _SCALARS:
            continue
        converted = plain(item)
        if converted is not item:
            if copy is None:
                copy = list(value)
            copy[index] = converted
    return value if copy is None else copy


def _plain_other(value: object) -> object:
    if isinstance(value, ResultView):
        return plain(value.value)
    from jinja2 import StrictUndefined, Undefined  # only templates make undefined values

    if isinstance(value, Undefined):
        if isinstance(value, StrictUndefined) or getattr(type(value), "noetl_strict", False):
            value._fail_with_undefined_error()
        return None
    if isinstance(value, str):
        return str(value)  # Markup and other str subclasses
    if isinstance(value, int | float):
        return value
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, set | frozenset):
        return [plain(item) for item in sorted(value, key=repr)]  # a stable order for replay
    if isinstance(value, Iterable) and not isinstance(value, bytes | bytearray):
        return [plain(item) for item in value]  # tuples, generators, ranges, dict views
    raise TypeError(f"a template produced a {type(value).__name__}, which is not a JSON value")
