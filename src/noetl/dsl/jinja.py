"""The Jinja2 machinery behind :mod:`noetl.dsl.templates`: environment, compile cache, errors.

Kept apart so that a playbook without templates never imports Jinja2 (start-up time); see
:mod:`noetl.dsl.templates` for the rules.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final, NoReturn, TypeAlias, cast

from jinja2 import ChainableUndefined, Template, TemplateSyntaxError, Undefined, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing

from noetl.dsl import budget
from noetl.dsl.filters import FILTERS
from noetl.dsl.views import MISSING, ResultView, plain
from noetl.errors import TemplateError

_VIEW_METHODS: Final = frozenset({"keys", "values", "items", "get"})
_DICT_ATTRIBUTES: Final = frozenset(dir(dict))
_SHOWN_CHARS: Final = 200
_CACHE_SIZE: Final = 10_000


def evaluate(template: str, context: Mapping[str, object], *, strict: bool = True) -> object:
    """Render one template string: the native value of a single ``{{ expr }}``, else a string."""
    compiled = _compile(template, strict)
    try:
        if type(compiled) is _Lookup or budget.in_force() is not None:
            return compiled.run(context)
        token = budget.enter(budget.Budget())  # each render outside a caller's budget gets its own
        try:
            return compiled.run(context)
        finally:
            budget.leave(token)
    except TemplateError:
        raise
    except _UndefinedUse as error:
        raise _undefined_error(error.undefined, template, context, strict) from None
    except SecurityError as error:
        raise TemplateError(f"unsafe operation in template {_shown(template)}: {error}") from error
    except Exception as error:
        message = f"template {_shown(template)} failed: {type(error).__name__}: {error}"
        raise TemplateError(message) from error


def cache_info() -> functools._CacheInfo:
    """Hits, misses and size of the compiled-template cache (one entry per template string and mode)."""
    return _compile.cache_info()


# --- undefined values that say which name they stand for -------------------------------------------


class _UndefinedUse(UndefinedError):
    """Raised when a template uses an undefined value; carries that value so the error can name it."""

    def __init__(self, undefined: Undefined) -> None:
        super().__init__(undefined._undefined_message)
        self.undefined = undefined


class _StrictUndefined(ChainableUndefined):
    """DECISIONS 10 (amended): an undefined value chains (``a.b.c`` of a missing ``a`` is undefined),
    is false, and works with ``default`` and ``is defined``, as upstream's do; using it as a value
    (rendering, comparing, iterating, measuring, arithmetic) is an error naming it."""

    __slots__ = ()
    noetl_strict: Final = True
    __iter__ = __str__ = __len__ = __contains__ = Undefined._fail_with_undefined_error
    __eq__ = __ne__ = Undefined._fail_with_undefined_error
    __hash__ = Undefined.__hash__

    def _fail_with_undefined_error(self, *args: object, **kwargs: object) -> NoReturn:
        raise _UndefinedUse(self)


class _LenientUndefined(ChainableUndefined):
    __slots__ = ()

    def _fail_with_undefined_error(self, *args: object, **kwargs: object) -> NoReturn:
        raise _UndefinedUse(self)


def _route_failures(cls: type[Undefined]) -> None:
    # Jinja binds each failing dunder (__str__, __add__, __iter__, ...) to the base class's function at
    # class creation, so overriding the method alone would not reach them; rebind every one of them.
    for name in dir(cls):
        if getattr(cls, name) is Undefined._fail_with_undefined_error:
            setattr(cls, name, cls._fail_with_undefined_error)


_route_failures(_StrictUndefined)
_route_failures(_LenientUndefined)


# --- the environment --------------------------------------------------------------------------------


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox, with dicts and views looked up key-first and unsafe attribute access failing at once.

    Jinja reads ``d.items`` as the dict method even when ``d`` has an ``items`` key; in data templates
    (``{{ fetch.data.items }}`` of a paged API) the key is what the author means, so keys win and the
    dict methods remain reachable only when no key has their name.
    """

    def getattr(self, obj: object, attribute: str) -> object:
        budget.tick()
        if type(obj) is dict:
            found = obj.get(attribute, MISSING)
            if found is not MISSING:
                return found
            if attribute not in _DICT_ATTRIBUTES:
                return self.undefined(obj=obj, name=attribute)
        elif isinstance(obj, ResultView):
            return self._view_field(obj, attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: object, argument: object) -> object:
        budget.tick()
        if isinstance(obj, ResultView):
            return self._view_field(obj, argument)
        return super().getitem(obj, argument)

    def _view_field(self, view: ResultView, key: object) -> object:
        found = view.field(key)
        if found is not MISSING:
            return found
        if isinstance(key, str) and key in _VIEW_METHODS:
            return getattr(view, key)
        return self.undefined(obj=view, name=cast(str, key))

    # The render budget (noetl.dsl.budget): calls and the operators that build big values are counted
    # and checked before they run.
    intercepted_binops = budget.INTERCEPTED_BINOPS

    def call_binop(self, context: Context, operator: str, left: object, right: object) -> object:
        budget.binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(self, __context: Context, __obj: object, *args: object, **kwargs: object) -> object:
        budget.check_call(__obj, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: object) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        text = cast(str, getattr(value, "__self__", ""))

        def checked(*args: object, **kwargs: object) -> str:
            budget.check_format(text, args, kwargs)
            return wrapped(*args, **kwargs)

        return checked

    def unsafe_undefined(self, obj: object, attribute: str) -> Undefined:
        # Jinja returns an undefined that fails only when used, and a lenient one never fails; we refuse
        # in both modes, right away.
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")


def _environment(undefined: type[Undefined]) -> _Environment:
    env = _Environment(undefined=undefined, autoescape=False, keep_trailing_newline=True)
    env.filters.pop("random", None)  # templates are pure: no randomness
    env.globals.pop("lipsum", None)
    env.filters.update(FILTERS)
    env.filters.update(budget.wrap_filters(env.filters))
    return env


_STRICT: Final = _environment(_StrictUndefined)
_LENIENT: Final = _environment(_LenientUndefined)
_GLOBALS: Final[Mapping[str, object]] = dict(_STRICT.globals)


def _env(strict: bool) -> _Environment:
    return _STRICT if strict else _LENIENT


# --- compiling and running --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Text:
    """A template that renders to a string."""

    template: Template

    def run(self, context: Mapping[str, object]) -> object:
        parts: list[str] = []
        size = 0
        for part in self.template.root_render_func(_jinja_context(self.template, context)):
            size += len(part)
            if size > budget.MAX_OUTPUT:
                budget.check_output(size)
            parts.append(part)
        return "".join(parts)


@dataclass(frozen=True, slots=True)
class _Expression:
    """A template that is one ``{{ expr }}``: the native value of ``expr`` is the result."""

    template: Template

    def run(self, context: Mapping[str, object]) -> object:
        jinja_context = _jinja_context(self.template, context)
        for _ in self.template.root_render_func(jinja_context):
            pass
        return plain(jinja_context.vars["result"])


@dataclass(frozen=True, slots=True)
class _Lookup:
    """A template that is one ``{{ name.field['key'] }}``: looked up directly, without running Jinja code.

    It makes the same ``getattr``/``getitem`` calls as the compiled template would, several times
    faster. The value comes from the context, which holds JSON and views, so only a view at the top is
    unwrapped and the value is not walked (a loop over 100,000 rows stays cheap).
    """

    env: _Environment
    name: str
    keys: tuple[tuple[object, bool], ...]  # (key, written as .attribute)

    def run(self, context: Mapping[str, object]) -> object:
        value = context.get(self.name, MISSING)
        if value is MISSING:
            value = _GLOBALS.get(self.name, MISSING)
        if value is MISSING:
            value = self.env.undefined(name=self.name)
        for key, by_attribute in self.keys:
            value = self.env.getattr(value, cast(str, key)) if by_attribute else self.env.getitem(value, key)
        if isinstance(value, ResultView):
            return value.value
        if type(value) is dict or type(value) is list:
            return value  # JSON from the context: not walked (see the class docstring)
        return plain(value)  # scalars pass; undefined values and Jinja globals (functions) do not


_Compiled: TypeAlias = _Text | _Expression | _Lookup


def _jinja_context(template: Template, context: Mapping[str, object]) -> Context:
    env = template.environment
    return env.context_class(env, cast(dict[str, object], _Scope(context)), None, template.blocks)


class _Scope(Mapping[str, object]):
    """The names a template sees: the caller's context over Jinja's globals (``range``, ``dict``,
    ``namespace``...). It reads both in place, where Jinja would copy them on every render."""

    __slots__ = ("_context",)

    def __init__(self, context: Mapping[str, object]) -> None:
        self._context = context

    def __getitem__(self, key: str) -> object:
        try:
            return self._context[key]
        except KeyError:
            return _GLOBALS[key]

    def __contains__(self, key: object) -> bool:
        return key in self._context or key in _GLOBALS

    def __iter__(self) -> Iterator[str]:
        return iter({**_GLOBALS, **self._context})

    def __len__(self) -> int:
        return len({**_GLOBALS, **self._context})


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _compile(source: str, strict: bool) -> _Compiled:
    env = _env(strict)
    try:
        tree = env.parse(source)
        budget.instrument_tree(tree)
        expression = _single_expression(tree)
        if expression is None:
            return _Text(env.from_string(tree))
        lookup = _lookup(env, expression)
        if lookup is not None:
            return lookup
        body = [nodes.Assign(nodes.Name("result", "store"), expression, lineno=expression.lineno)]
        tree = nodes.Template(body, lineno=1)
        tree.set_environment(env)
        return _Expression(env.from_string(tree))
    except TemplateSyntaxError as error:
        where = f" (line {error.lineno})" if "\n" in source.strip() else ""
        raise TemplateError(f"template syntax error in {_shown(source)}{where}: {error.message}") from None


def _single_expression(tree: nodes.Template) -> nodes.Expr | None:
    """The expression of a template that is exactly one ``{{ expr }}`` between whitespace, else None."""
    if len(tree.body) != 1 or not isinstance(tree.body[0], nodes.Output):
        return None
    parts = [node for node in tree.body[0].nodes if not _is_blank(node)]
    if len(parts) != 1 or isinstance(parts[0], nodes.TemplateData):
        return None
    return parts[0]


def _is_blank(node: nodes.Expr) -> bool:
    return isinstance(node, nodes.TemplateData) and not node.data.strip()


def _lookup(env: _Environment, node: nodes.Expr) -> _Lookup | None:
    """A :class:`_Lookup` for a name followed by constant ``.field`` / ``[key]`` steps, else None."""
    keys: list[tuple[object, bool]] = []
    while isinstance(node, nodes.Getattr | nodes.Getitem):
        key = _key_of(node)
        if key is MISSING:
            return None
        keys.append((key, isinstance(node, nodes.Getattr)))
        node = node.node
    if not isinstance(node, nodes.Name):
        return None
    return _Lookup(env, node.name, tuple(reversed(keys)))


# --- naming what was undefined ----------------------------------------------------------------------


def _undefined_error(
    undefined: Undefined, source: str, context: Mapping[str, object], strict: bool
) -> TemplateError:
    name = undefined._undefined_name
    obj = undefined._undefined_obj
    if name is None:
        return TemplateError(f"{undefined._undefined_message} in template {_shown(source)}")
    if obj is missing:
        return TemplateError(f"undefined variable '{name}' in template {_shown(source)}", variable=name)
    base = _base_path(_env(strict), source, obj, name, context)
    variable = _join_path(base, name) if base else str(name)
    message = f"undefined variable '{variable}' in template {_shown(source)} ({_describe(base, obj)})"
    return TemplateError(message, variable=variable)


def _base_path(
    env: _Environment, source: str, obj: object, key: object, context: Mapping[str, object]
) -> str | None:
    """The dotted path, as written in the template, of the value ``obj`` on which ``key`` was missing."""
    candidates: list[tuple[str, nodes.Expr]] = []
    for node in env.parse(source).find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, nodes.Getattr | nodes.Getitem)  # what find_all was asked for
        base = _path(node.node)
        if base is not None and _key_of(node) == key:
            candidates.append((base, node.node))
    for base, node in candidates:
        if _same(_resolve(env, node, context), obj):
            return base
    paths = {base for base, _ in candidates}
    return paths.pop() if len(paths) == 1 else None  # e.g. a loop variable, absent from the context


def _key_of(node: nodes.Getattr | nodes.Getitem) -> object:
    if isinstance(node, nodes.Getattr):
        return node.attr
    return node.arg.value if isinstance(node.arg, nodes.Const) else MISSING


def _path(node: nodes.Expr) -> str | None:
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr | nodes.Getitem):
        base = _path(node.node)
        key = _key_of(node)
        return None if base is None or key is MISSING else _join_path(base, key)
    return None


def _join_path(base: str, key: object) -> str:
    if isinstance(key, str) and key.isidentifier():
        return f"{base}.{key}"
    return f"{base}[{key!r}]"


def _resolve(env: _Environment, node: nodes.Expr, context: Mapping[str, object]) -> object:
    if isinstance(node, nodes.Name):
        return context.get(node.name, MISSING)
    if not isinstance(node, nodes.Getattr | nodes.Getitem):
        return MISSING
    base = _resolve(env, node.node, context)
    if base is MISSING or isinstance(base, Undefined):
        return MISSING
    key = _key_of(node)
    found = env.getattr(base, key) if isinstance(key, str) else env.getitem(base, key)
    return MISSING if isinstance(found, Undefined) else found


def _same(left: object, right: object) -> bool:
    if isinstance(left, ResultView):
        left = left.value
    if isinstance(right, ResultView):
        right = right.value
    return left is right


def _describe(base: str | None, obj: object) -> str:
    """What the value that lacked the field holds, to help the author spot a typo."""
    subject = f"'{base}'" if base else "the value"
    if isinstance(obj, ResultView | Mapping):
        fields = list(obj.keys())
        listed = ", ".join(str(key) for key in fields[:20]) + (", ..." if len(fields) > 20 else "")
        return f"{subject} has no such field; its fields are: {listed}" if fields else f"{subject} is empty"
    if isinstance(obj, list | tuple):
        return f"{subject} is a list of {len(obj)} items"
    return f"{subject} has type {type(obj).__name__}"


def _shown(source: str) -> str:
    """The template as quoted in messages, shortened when long (SQL, code)."""
    text = source if len(source) <= _SHOWN_CHARS else source[: _SHOWN_CHARS - 3] + "..."
    return "'" + re.sub(r"\s*\n\s*", " ", text.strip()) + "'"
