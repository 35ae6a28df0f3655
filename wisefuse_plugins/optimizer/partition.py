"""Fusion as partitions of the Python stages: which are valid, and enumerating them.

The rules are :func:`~wisefuse_plugins.plan.schema.plan_problems`' (each unit weakly
connected; its stages' scheduling settings equal, :mod:`~wisefuse_plugins.plan.scheduling`;
a unit of mapped stages has only one-to-one edges inside and one parallelism; no cycle
between units, opaque stages being their own nodes), checked here on plain sets
because the searches test thousands of partitions and building a Plan for each is slow.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from wisefuse_plugins.ir import EdgePattern, Workflow
from wisefuse_plugins.plan.scheduling import same_scheduling


def neighbours(wf: Workflow) -> dict[str, set[str]]:
    """Undirected adjacency of the stage graph."""
    adjacent: dict[str, set[str]] = {s: set() for s in wf.graph.nodes}
    for e in wf.edges:
        adjacent[e.src].add(e.dst)
        adjacent[e.dst].add(e.src)
    return adjacent


def block_ok(wf: Workflow, block: Sequence[str], adjacent: dict[str, set[str]]) -> bool:
    """A unit of ``block``: Python stages with the same scheduling settings (one task has
    one pool, queue...), connected and, when all mapped, fusable instance to instance."""
    members = set(block)
    if any(not wf.stage(s).is_python for s in block) or not same_scheduling(wf, block):
        return False
    first = next(iter(block))
    seen, todo = {first}, [first]
    while todo:
        for n in adjacent[todo.pop()] & members:
            if n not in seen:
                seen.add(n)
                todo.append(n)
    if len(seen) != len(members):
        return False
    if all(wf.stage(s).mapped for s in block):
        if len({wf.stage(s).parallelism for s in block}) > 1:
            return False
        return all(
            wf.edge(a, b).pattern == EdgePattern.ONE_TO_ONE
            for a in block
            for b in wf.successors(a)
            if b in members
        )
    return True


def acyclic(wf: Workflow, blocks: Iterable[Sequence[str]]) -> bool:
    """No cycle in the graph of units (opaque stages as their own nodes)."""
    owner: dict[str, object] = {s: i for i, b in enumerate(blocks) for s in b}
    succ: dict[object, set[object]] = {}
    for e in wf.edges:
        a, b = owner.get(e.src, e.src), owner.get(e.dst, e.dst)
        if a != b:
            succ.setdefault(a, set()).add(b)
    state: dict[object, int] = {}  # 1: on the stack, 2: done
    for root in list(succ):
        if root in state:
            continue
        stack = [(root, iter(succ.get(root, ())))]
        state[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return False
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(succ.get(nxt, ()))))
    return True


def set_partitions(items: list[str]) -> Iterator[list[list[str]]]:
    """Every partition of ``items`` into non-empty blocks (Bell(n) of them)."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in set_partitions(rest):
        yield [[first], *part]
        for i in range(len(part)):
            yield [*part[:i], [first, *part[i]], *part[i + 1 :]]


def valid_partitions(wf: Workflow, python: list[str]) -> Iterator[list[tuple[str, ...]]]:
    """Partitions of ``python`` (stage ids in topological order) that make a valid plan;
    blocks keep that order, and are listed by their first stage."""
    rank = {s: i for i, s in enumerate(python)}
    adjacent = neighbours(wf)
    for part in set_partitions(python):
        blocks = [tuple(sorted(b, key=rank.__getitem__)) for b in part]
        if all(block_ok(wf, b, adjacent) for b in blocks) and acyclic(wf, blocks):
            yield sorted(blocks, key=lambda b: rank[b[0]])


def merged(
    wf: Workflow, a: Sequence[str], b: Sequence[str], rank: dict[str, int]
) -> tuple[str, ...]:
    """The stages of units ``a`` and ``b`` together, in topological order."""
    return tuple(sorted({*a, *b}, key=rank.__getitem__))
