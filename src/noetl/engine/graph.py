"""The static shape of a workflow: who routes to whom, what can reach what.

Computed once per playbook and cached. ``reach[a]`` is every step reachable from ``a`` through
arcs (``a`` itself only if it sits on a cycle). An arc ``u -> t`` is a *back-edge* when ``t`` can
reach ``u`` (or ``t == u``): it closes a workflow loop. ``forward_upstreams[t]`` are the sources of
the other arcs into ``t``: the branches a fan-in barrier waits for.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from noetl.dsl.model import Playbook


@dataclass(frozen=True, slots=True)
class Graph:
    successors: dict[str, tuple[str, ...]]
    reach: dict[str, frozenset[str]]
    forward_upstreams: dict[str, tuple[str, ...]]

    def is_back_edge(self, source: str | None, target: str) -> bool:
        if source is None:
            return False
        return source == target or source in self.reach.get(target, frozenset())


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
    reach = {name: _reachable(name, successors) for name in successors}
    upstreams: dict[str, list[str]] = {name: [] for name in successors}
    for source, targets in successors.items():
        for target in targets:
            if source != target and source not in reach[target]:
                upstreams[target].append(source)
    return Graph(successors, reach, {k: tuple(v) for k, v in upstreams.items()})


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
