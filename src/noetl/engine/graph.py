"""The static shape of a workflow: who routes to whom, what can reach what.

Computed once per playbook and cached, in time linear in the number of steps and arcs (issue 17: a
chain of 10,000 steps). An arc ``u -> t`` is a *back-edge* when ``t`` can reach ``u`` (or
``t == u``): it closes a workflow loop - exactly when ``u`` and ``t`` sit in the same strongly
connected component, which is what is stored. ``forward_upstreams[t]`` are the sources of the other
arcs into ``t``: the branches a fan-in barrier waits for. :meth:`Graph.reaches` answers "can ``a``
reach ``b``" (``a`` reaches itself only if it sits on a cycle), computing ``a``'s reachable set on
first use (only fan-in barriers ask).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field

from noetl.dsl.model import Playbook

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class Graph:
    successors: dict[str, tuple[str, ...]]
    component: dict[str, int]
    """Step -> its strongly connected component's number."""
    looped: frozenset[str]
    """Steps on a cycle (a component of several steps, or a step with an arc to itself)."""
    forward_upstreams: dict[str, tuple[str, ...]]
    _reach: dict[str, frozenset[str]] = field(default_factory=dict, compare=False, repr=False)
    _texts: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    _reads: dict[str, frozenset[str] | None] = field(default_factory=dict, compare=False, repr=False)
    _odd: tuple[str, ...] = field(default=(), compare=False, repr=False)
    """Step names that are not identifiers: matched as substrings, not as words."""

    def reads(self, step: str) -> frozenset[str] | None:
        """The steps whose results ``step``'s templates can name - those whose name appears in the
        step's definition (a superset) - or None for all of them (its text names ``steps``, the map
        a template can index with any name)."""
        if step in self._reads:
            return self._reads[step]
        text = self._texts.get(step, "")
        found: frozenset[str] | None
        words = set(_WORD.findall(text))
        if "steps" in words:
            found = None
        else:
            steps = self.successors
            found = frozenset({word for word in words if word in steps} | self._odd_names(text))
        self._reads[step] = found
        return found

    def _odd_names(self, text: str) -> set[str]:
        """Step names that are not identifiers (``load-users``) and appear in ``text``."""
        return {name for name in self._odd if name in text}

    def is_back_edge(self, source: str | None, target: str) -> bool:
        """Does the arc ``source -> target`` close a loop (``target`` can reach ``source``)?"""
        if source is None:
            return False
        if source == target:
            return True
        found = self.component.get(target)
        return found is not None and found == self.component.get(source)

    def reaches(self, start: str, goal: str) -> bool:
        """Can ``goal`` be reached from ``start`` through arcs (``start`` itself only on a cycle)?"""
        if start == goal:
            return start in self.looped
        if self.component.get(start) == self.component.get(goal) and start in self.component:
            return True
        reach = self._reach.get(start)
        if reach is None:
            reach = self._reach[start] = _reachable(start, self.successors)
        return goal in reach


_CACHE: OrderedDict[int, tuple[Playbook, Graph]] = OrderedDict()
_CACHE_SIZE = 256


def graph_of(playbook: Playbook) -> Graph:
    """The graph of ``playbook`` (cached by identity)."""
    hit = _CACHE.get(id(playbook))
    if hit is not None and hit[0] is playbook:
        return hit[1]
    graph = build(playbook)
    _CACHE[id(playbook)] = (playbook, graph)
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return graph


def build(playbook: Playbook) -> Graph:
    successors: dict[str, tuple[str, ...]] = {}
    for step in playbook.workflow:
        arcs = step.next.arcs if step.next is not None else ()
        successors[step.name] = tuple(dict.fromkeys(a.step for a in arcs if a.step in playbook.steps))
    component = _components(successors)
    sizes: dict[int, int] = {}
    for number in component.values():
        sizes[number] = sizes.get(number, 0) + 1
    looped = frozenset(
        name for name, targets in successors.items() if sizes[component[name]] > 1 or name in targets
    )
    upstreams: dict[str, list[str]] = {name: [] for name in successors}
    for source, targets in successors.items():
        for target in targets:
            if source != target and component[source] != component[target]:
                upstreams[target].append(source)
    texts = {step.name: repr(step) for step in playbook.workflow}
    odd = tuple(name for name in successors if not _IDENTIFIER.fullmatch(name))
    forward = {k: tuple(v) for k, v in upstreams.items()}
    return Graph(successors, component, looped, forward, {}, texts, {}, odd)


def _components(successors: dict[str, tuple[str, ...]]) -> dict[str, int]:
    """Tarjan's strongly connected components, iteratively (no recursion limit on long chains)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    component: dict[str, int] = {}
    counter = 0
    for root in successors:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, position = work.pop()
            if position == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            targets = successors.get(node, ())
            if position < len(targets):
                work.append((node, position + 1))
                target = targets[position]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            if low[node] == index[node]:
                number = index[node]
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component[member] = number
                    if member == node:
                        break
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return component


def _reachable(start: str, successors: dict[str, tuple[str, ...]]) -> frozenset[str]:
    seen: set[str] = set()
    stack = list(successors.get(start, ()))
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        stack.extend(successors.get(node, ()))
    return frozenset(seen)
