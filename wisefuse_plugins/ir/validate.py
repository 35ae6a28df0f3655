"""Semantic rules of a workflow, checked whenever a :class:`Workflow` is built.

Each rule is a small generator of ``(path, reason)`` problems; :func:`check` runs them all
and raises one :class:`IRError` listing everything wrong, so a user fixes a file in one go.
The rules read a workflow's name, stages and edges only (:class:`Graph`), so this module
imports the parts, never :mod:`wisefuse_plugins.ir.workflow`, which calls it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Protocol

from wisefuse_plugins.ir.errors import IRError
from wisefuse_plugins.ir.graphs import adjacency, find_cycle
from wisefuse_plugins.ir.names import is_safe_name
from wisefuse_plugins.ir.nodes import (
    ConstItem,
    Edge,
    EdgeKind,
    Item,
    Stage,
    StageKind,
    edge_pattern,
    upstream_of,
)


class Graph(Protocol):
    """What the rules read of a :class:`~wisefuse_plugins.ir.workflow.Workflow`."""

    @property
    def name(self) -> str: ...

    @property
    def stages(self) -> list[Stage]: ...

    @property
    def edges(self) -> list[Edge]: ...


Problems = Iterator[tuple[str, str]]


def _ids(wf: Graph) -> Problems:
    counts = Counter(s.id for s in wf.stages)
    for i, s in enumerate(wf.stages):
        if counts[s.id] > 1:
            yield f"$.stages[{i}].id", f"stage id {s.id!r} is used by {counts[s.id]} stages"
        if not is_safe_name(s.id):
            yield (
                f"$.stages[{i}].id",
                f"stage id {s.id!r} is not a valid Lambda name (1-64 chars of A-Z a-z 0-9 _ -); "
                "derive one with wisefuse_plugins.ir.safe_name",
            )


def _kinds(wf: Graph) -> Problems:
    for i, s in enumerate(wf.stages):
        if s.kind == StageKind.PYTHON and s.callable is None:
            yield f"$.stages[{i}].callable", f"python stage {s.id!r} has no callable"
        if s.kind == StageKind.OPAQUE and not s.opaque_reason:
            yield f"$.stages[{i}].opaque_reason", f"opaque stage {s.id!r} needs a reason"


def _bindings(wf: Graph) -> Problems:
    ids = {s.id for s in wf.stages}
    for i, s in enumerate(wf.stages):
        for param, b in s.bindings.items():
            src = upstream_of(b)
            if src is None:
                continue
            path = f"$.stages[{i}].bindings.{param}"
            if src == s.id:
                yield path, f"stage {s.id!r} reads its own output"
            elif src not in ids:
                yield path, f"reads stage {src!r}, which does not exist"


def _parallelism(wf: Graph) -> Problems:
    by_id = {s.id: s for s in wf.stages}
    for i, s in enumerate(wf.stages):
        path = f"$.stages[{i}].parallelism"
        if not s.mapped:
            if s.parallelism != 1:
                yield (
                    path,
                    f"stage {s.id!r} is not mapped (no item bindings) but has parallelism {s.parallelism}",
                )
            continue
        for param, b in s.bindings.items():
            if isinstance(b, ConstItem) and len(b.values) != s.parallelism:
                yield (
                    f"$.stages[{i}].bindings.{param}",
                    f"maps over {len(b.values)} literal values but the stage has parallelism {s.parallelism}",
                )
            src = by_id.get(b.stage) if isinstance(b, Item) else None
            if src is not None and src.mapped and src.parallelism != s.parallelism:
                yield (
                    f"$.stages[{i}].bindings.{param}",
                    f"pairs instance by instance with {src.id!r} ({src.parallelism} instances) "
                    f"but the stage has parallelism {s.parallelism}",
                )


def _edges(wf: Graph) -> Problems:
    by_id = {s.id: s for s in wf.stages}
    seen: set[tuple[str, str]] = set()
    for j, e in enumerate(wf.edges):
        path = f"$.edges[{j}]"
        missing = [x for x in (e.src, e.dst) if x not in by_id]
        if missing:
            yield path, f"edge {e.src!r} -> {e.dst!r} names unknown stage(s) {missing}"
            continue
        if (e.src, e.dst) in seen:
            yield path, f"edge {e.src!r} -> {e.dst!r} is listed twice"
        seen.add((e.src, e.dst))
        src, dst = by_id[e.src], by_id[e.dst]
        readers = [b for b in dst.bindings.values() if upstream_of(b) == e.src]
        if e.kind == EdgeKind.DATA and not readers:
            yield (
                path,
                f"data edge {e.src!r} -> {e.dst!r} but no binding of {e.dst!r} reads {e.src!r}; make it a control edge",
            )
            continue
        if e.kind == EdgeKind.CONTROL and readers:
            yield (
                path,
                f"control edge {e.src!r} -> {e.dst!r} but {e.dst!r} reads {e.src!r}'s data; make it a data edge",
            )
            continue
        expected = set()
        for b in readers or [None]:
            try:
                expected.add(edge_pattern(b.kind if b else None, src.mapped, dst.mapped))
            except ValueError as err:
                yield path, f"{e.src!r} -> {e.dst!r}: {err}"
        if expected and e.pattern not in expected:
            want = " or ".join(sorted(p.value for p in expected))
            yield (
                path,
                f"pattern {e.pattern.value!r} does not fit how {e.dst!r} reads {e.src!r} (expected {want})",
            )
    for i, s in enumerate(wf.stages):
        for param, b in s.bindings.items():
            src = upstream_of(b)
            if src is not None and src in by_id and src != s.id and (src, s.id) not in seen:
                yield (
                    f"$.stages[{i}].bindings.{param}",
                    f"reads {src!r} but there is no edge {src!r} -> {s.id!r}",
                )


def _acyclic(wf: Graph) -> Problems:
    cycle = find_cycle(adjacency([], [(e.src, e.dst) for e in wf.edges]))
    if cycle:
        yield "$.edges", f"the graph has a cycle: {' -> '.join([*cycle, cycle[0]])}"


RULES: tuple[Callable[[Graph], Problems], ...] = (
    _ids,
    _kinds,
    _bindings,
    _parallelism,
    _edges,
    _acyclic,
)


def problems(wf: Graph) -> list[tuple[str, str]]:
    """Every rule violation of ``wf`` as ``(path, reason)`` pairs, in rule order."""
    return [p for rule in RULES for p in rule(wf)]


def check(wf: Graph) -> None:
    """Raise :class:`IRError` if ``wf`` breaks any rule."""
    found = problems(wf)
    if found:
        raise IRError(found, what=f"workflow {wf.name!r}")
