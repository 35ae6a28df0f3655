"""The few graph algorithms that a DAG file's parse needs, in plain Python.

The drop-in ``rewrite(dag, plan)`` runs at every parse of a DAG file (by Airflow's DAG
processor, and again in every task's process), so what it imports is paid each time:
``networkx`` alone takes 0.1-0.5 s to import, more than the whole plain DAG's parse.
These functions give the same answers as the networkx calls they replace
(``lexicographical_topological_sort``, ``find_cycle``, ``is_weakly_connected``) on the
small graphs of a workflow; everything else keeps using networkx (``Workflow.graph``).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, TypeVar

N = TypeVar("N", bound=Hashable)


def adjacency(nodes: Iterable[N], edges: Iterable[tuple[N, N]]) -> dict[N, list[N]]:
    """Successors of every node, each once, in the order of the edges (as a networkx
    ``DiGraph`` keeps them); a node named only by an edge is added after ``nodes``."""
    succ: dict[N, dict[N, None]] = {n: {} for n in nodes}
    for a, b in edges:
        succ.setdefault(a, {})[b] = None
        succ.setdefault(b, {})
    return {n: list(out) for n, out in succ.items()}


def topological_order(succ: dict[N, list[N]], key: Callable[[N], Any] | None = None) -> list[N]:
    """Producers before consumers; among nodes ready at once, the smallest ``key`` first,
    then the earliest in ``succ`` (networkx's ``lexicographical_topological_sort``).

    Raises ValueError when the graph has a cycle.
    """
    rank = {n: i for i, n in enumerate(succ)}
    by = key or rank.__getitem__
    indegree = dict.fromkeys(succ, 0)
    for out in succ.values():
        for b in out:
            indegree[b] += 1
    ready = [(by(n), rank[n], n) for n, d in indegree.items() if d == 0]
    heapq.heapify(ready)
    order: list[N] = []
    while ready:
        node = heapq.heappop(ready)[2]
        order.append(node)
        for child in succ[node]:
            indegree[child] -= 1
            if indegree[child] == 0:
                heapq.heappush(ready, (by(child), rank[child], child))
    if len(order) != len(succ):
        raise ValueError("the graph has a cycle")
    return order


def find_cycle(succ: dict[N, list[N]]) -> list[N] | None:
    """The nodes of the first cycle a depth-first search meets (from the nodes in order,
    successors in order, as ``networkx.find_cycle`` walks), or None for an acyclic graph."""
    done: set[N] = set()
    for start in succ:
        if start in done:
            continue
        path: list[N] = [start]
        on_path = {start}
        todo: list[Iterable[N]] = [iter(succ[start])]
        while todo:
            child = next(todo[-1], None)  # type: ignore[call-overload]
            if child is None:
                todo.pop()
                done.add(path[-1])
                on_path.discard(path.pop())
            elif child in on_path:
                return path[path.index(child) :]
            elif child not in done:
                path.append(child)
                on_path.add(child)
                todo.append(iter(succ[child]))
    return None


def is_connected(nodes: Sequence[N], succ: dict[N, list[N]]) -> bool:
    """True when ``nodes`` are one piece, edges among them taken in either direction."""
    members = set(nodes)
    if not members:
        return False
    near: dict[N, set[N]] = {n: set() for n in members}
    for a in members:
        for b in succ.get(a, ()):
            if b in members:
                near[a].add(b)
                near[b].add(a)
    seen = {nodes[0]}
    todo = [nodes[0]]
    while todo:
        for b in near[todo.pop()] - seen:
            seen.add(b)
            todo.append(b)
    return seen == members
