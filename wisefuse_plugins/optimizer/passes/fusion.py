"""Fusion: merge units joined by an edge when the merged plan scores better.

A merge is allowed when the result is still a valid plan (connected, no cycle between
units, mapped stages linked one-to-one, the same scheduling settings, as one task has one
pool or queue: :mod:`~wisefuse_plugins.optimizer.partition`).
Merging an unmapped producer with the mapped stage it scatters to makes one invocation
that runs every instance (as Faastlane does); merging mapped stages one-to-one keeps
bundling possible.

A merge changes which settings pay off everywhere on the critical path, so on small plans
each candidate is judged *after right-sizing the whole plan around it* (best move per
round, until none helps: :func:`search_merges`): judging it at the current memories, with
the SLO missed or met by a margin, rejects merges that pay once memory is re-balanced.
On large plans that is too slow. There, first, series merges (a unit whose one successor
has it as its one predecessor) are made when the merged unit's menu is no worse: cheaper
at its cheapest and no slower at its fastest than the two apart plus the hand-off. Then,
on the right-sized plan, any merge along an edge that saves money and whose paths still
fit the P95 by a bound (:func:`bound_merges`): the longest path through the merged unit
is exact from the finish times of its predecessors and the tails of its successors, and
paths that avoid it do not change. Non-overlapping merges are made in rounds, the plan
right-sized after each.
"""

from __future__ import annotations

import numpy as np

from wisefuse_plugins.optimizer.menu import Menu, build_menu
from wisefuse_plugins.optimizer.partition import acyclic, block_ok, merged, neighbours
from wisefuse_plugins.optimizer.sizing import (
    SMALL_UNITS,
    budget,
    claw_back,
    meet,
    settle,
    slack_pass,
)
from wisefuse_plugins.optimizer.space import Space
from wisefuse_plugins.optimizer.state import State, q95
from wisefuse_plugins.plan.schema import Plan, Unit

MOVES_UP_TO = 10
"""Python stages up to which the fusion search also moves single stages between units."""


def fuse(space: Space, plan: Plan) -> Plan:
    """Merge units where it pays (see the module docstring for small and large plans).

    Applies to an edge between two units when the merged unit is valid (Python stages with
    the same scheduling settings, connected, mapped ones one-to-one with one parallelism:
    :func:`.partition.block_ok`),
    the units stay acyclic (:func:`.partition.acyclic`), and the merged plan, right-sized
    (:func:`~wisefuse_plugins.optimizer.sizing.settle`), scores better. The result is
    right-sized: settings are chosen afresh, not kept from ``plan``.
    """
    blocks = [tuple(u.stages) for u in plan.units]
    if len(blocks) <= SMALL_UNITS:
        state = search_merges(space, blocks)
    else:
        state = State(space, series_merges(space, blocks))
        settle(state, start=True)
        state = bound_merges(space, state)
    return state.plan(**plan.meta)


def _pairs(space: Space, blocks: list[tuple[str, ...]]) -> set[tuple[int, int]]:
    owner = {s: i for i, b in enumerate(blocks) for s in b}
    out = set()
    for e in space.workflow.edges:
        a, b = owner.get(e.src), owner.get(e.dst)
        if a is not None and b is not None and a != b:
            out.add((min(a, b), max(a, b)))
    return out


def search_merges(space: Space, blocks: list[tuple[str, ...]]) -> State:
    """Local search over fusions, each candidate right-sized before it is compared.

    Best improvement, from every stage alone, with merges of two units; on workflows of
    up to :data:`MOVES_UP_TO` Python stages also moving one stage to a neighbouring unit
    or out on its own, and a second start from the coarsest fusion (merging pairs one at
    a time cannot reach a plan where only merging three at once pays).
    """
    wf = space.workflow
    rank = {s: i for i, s in enumerate(wf.topological_order())}
    adjacent = neighbours(wf)
    seen: dict[frozenset, State] = {}
    moves = len(wf.python_stages) <= MOVES_UP_TO

    def assess(cand: list[tuple[str, ...]]) -> State | None:
        key = frozenset(cand)
        if key not in seen:
            if not all(space.menu(b).feasible for b in cand):
                return None
            seen[key] = settle(State(space, cand), start=True, polished=False)
        return seen[key]

    def valid(cand: list[tuple[str, ...]], changed: list[tuple[str, ...]]) -> bool:
        return all(b and block_ok(wf, b, adjacent) for b in changed) and acyclic(wf, cand)

    def around(blocks: list[tuple[str, ...]]):
        for a, b in sorted(_pairs(space, blocks)):
            joined = merged(wf, blocks[a], blocks[b], rank)
            yield [blk for i, blk in enumerate(blocks) if i not in (a, b)] + [joined], [joined]
        if not moves:
            return
        owner = {s: i for i, blk in enumerate(blocks) for s in blk}
        for a, blk in enumerate(blocks):
            if len(blk) == 1:
                continue
            for s in blk:
                rest = tuple(x for x in blk if x != s)
                others = [x for i, x in enumerate(blocks) if i != a]
                yield [*others, rest, (s,)], [rest]
                for b in sorted({owner[n] for n in adjacent[s] if n in owner} - {a}):
                    grown = merged(wf, blocks[b], (s,), rank)
                    cand = [x for i, x in enumerate(blocks) if i not in (a, b)]
                    yield [*cand, rest, grown], [rest, grown]

    def descend(blocks: list[tuple[str, ...]]) -> State | None:
        current = assess(blocks)
        while current is not None:
            best = current
            for cand, changed in around(current.blocks()):
                if valid(cand, changed):
                    state = assess(cand)
                    if state is not None and state.key() < best.key():
                        best = state
            if best is current:
                break
            current = best
        return current

    found = [descend(blocks)]
    if moves:
        found.append(descend(coarsest(space, blocks, rank, adjacent)))
    best = min((f for f in found if f is not None), key=lambda st: st.key())
    return settle(best)


def coarsest(space: Space, blocks, rank, adjacent) -> list[tuple[str, ...]]:
    """Merge adjacent units while the plan stays valid, in topological order."""
    wf = space.workflow
    changed = True
    while changed:
        changed = False
        for a, b in sorted(_pairs(space, blocks)):
            joined = merged(wf, blocks[a], blocks[b], rank)
            cand = [blk for i, blk in enumerate(blocks) if i not in (a, b)] + [joined]
            if block_ok(wf, joined, adjacent) and acyclic(wf, cand):
                blocks, changed = cand, True
                break
    return blocks


def series_merges(space: Space, blocks: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """Merge series pairs whose merged menu is no worse; repeat along chains."""
    wf = space.workflow
    rank = {s: i for i, s in enumerate(wf.topological_order())}
    adjacent = neighbours(wf)
    orch = space.model.platform.orchestration_ms
    changed = True
    while changed:
        changed = False
        owner: dict[str, object] = {s: b for b in blocks for s in b}
        succ: dict[object, set[object]] = {}
        pred: dict[object, set[object]] = {}
        for e in wf.edges:
            a, b = owner.get(e.src, e.src), owner.get(e.dst, e.dst)
            if a != b:
                succ.setdefault(a, set()).add(b)
                pred.setdefault(b, set()).add(a)
        done: set[tuple[str, ...]] = set()
        out: list[tuple[str, ...]] = []
        for a in sorted(blocks, key=lambda blk: rank[blk[0]]):
            if a in done:
                continue
            nxt = succ.get(a, set())
            b = next(iter(nxt)) if len(nxt) == 1 else None
            if (
                not isinstance(b, tuple)
                or b in done
                or pred.get(b) != {a}
                or not _pays(space, a, b, merged(wf, a, b, rank), orch, adjacent)
            ):
                done.add(a)
                out.append(a)
                continue
            done.update((a, b))
            out.append(merged(wf, a, b, rank))
            changed = True
        out.extend(b for b in blocks if b not in done)
        blocks = out
    return blocks


def _pays(space: Space, a, b, joined, orch: float, adjacent) -> bool:
    if not block_ok(space.workflow, joined, adjacent):
        return False
    ma, mb = space.menu(a), space.menu(b)
    if not (len(ma) and len(mb)) or not _may_pay(space, ma, mb, joined):
        return False
    mj = space.menu(joined)
    if not mj.feasible:
        return False
    cheaper = mj.costs[0] <= ma.costs[0] + mb.costs[0]
    return bool(cheaper and np.all(mj.fastest <= ma.fastest + orch + mb.fastest))


def _may_pay(space: Space, ma, mb, joined: tuple[str, ...]) -> bool:
    """A quick look before building the merged unit's whole menu: is it cheaper than the
    two apart at either part's cheapest memory? (Most series pairs that do not pay fail
    here, at two settings instead of a menu's worth.)"""
    wf, model = space.workflow, space.model
    ua, ub = ma.units[0], mb.units[0]
    floor = space.min_memory(list(joined))
    bundle = min(ua.bundle_size, ub.bundle_size) if space.bundled(ua) and space.bundled(ub) else 1
    base = ua.model_copy(update={"stages": list(joined), "bundle_size": bundle})
    budget = float(ma.costs[0] + mb.costs[0])
    for m in {max(floor, ua.memory_mb), max(floor, ub.memory_mb)}:
        if model.unit_cost(wf, base.model_copy(update={"memory_mb": m})) <= budget:
            return True
    return False


def bound_merges(space: Space, state: State, rounds: int = 4) -> State:
    """Merges along edges that save money and keep the P95 budget by a bound (see above)."""
    wf = space.workflow
    rank = {s: i for i, s in enumerate(wf.topological_order())}
    adjacent = neighbours(wf)
    near: dict[tuple, Menu] = {}
    for _ in range(rounds):
        limit = budget(state)
        found = []
        for j in state.units:
            for i in state.preds[j]:
                if state.menus[i] is None or _other_path(state, i, j):
                    continue
                joined = merged(wf, state.nodes[i], state.nodes[j], rank)  # type: ignore[arg-type]
                if not block_ok(wf, joined, adjacent):
                    continue
                menu = _near(space, state, i, j, joined, near)
                if not menu.feasible:
                    continue
                apart = float(state.costs[i] + state.costs[j])
                pick = _fits(state, i, j, menu, apart, limit)
                if pick is not None:
                    found.append((apart - float(menu.costs[pick]), i, j, menu.units[pick]))
        if not found:
            break
        taken: set[int] = set()
        merges = []
        for _, i, j, pick in sorted(found, reverse=True):
            if i not in taken and j not in taken:
                taken.update((i, j))
                merges.append((i, j, pick))
        # each merge alone makes no cycle, but two can (i->j, k->l, i->l, k->j): keep the
        # better half until the units are acyclic (the rest may come back next round)
        while len(merges) > 1 and not acyclic(wf, _blocks_after(state, merges, rank)):
            merges = merges[: len(merges) // 2]
        state = _rebuilt(space, state, merges, rank)
        meet(state)
        slack_pass(state)
        claw_back(state, exact=False)
    return state


def _other_path(state: State, i: int, j: int) -> bool:
    """A path i -> ... -> j other than the edge: merging i and j would make a cycle."""
    todo = [s for s in state.succs[i] if s != j and s < j]
    seen = set(todo)
    while todo:
        n = todo.pop()
        for s in state.succs[n]:
            if s == j:
                return True
            if s < j and s not in seen:
                seen.add(s)
                todo.append(s)
    return False


def _near(space: Space, state: State, i: int, j: int, joined, cache: dict) -> Menu:
    """The merged unit's settings near the two units' own: their two memories and one
    grid step above the larger, their bundle sizes and archs. A few settings instead of
    a whole menu for each of thousands of candidate merges; the whole menu is built for
    the merges made (and right-sizing then picks from it)."""
    ui = state.menus[i].units[state.choice[i]]  # type: ignore[union-attr]
    uj = state.menus[j].units[state.choice[j]]  # type: ignore[union-attr]
    grid = space.memories(list(joined))
    lo, hi = min(ui.memory_mb, uj.memory_mb), max(ui.memory_mb, uj.memory_mb)
    memories = sorted({m for m in grid if m in (lo, hi)} | set([m for m in grid if m > hi][:1]))
    memories = memories or grid[:1]
    both = space.bundled(ui) and space.bundled(uj)
    sizes = sorted({ui.bundle_size, uj.bundle_size}) if both else [1]
    key = (joined, tuple(memories), tuple(sizes), ui.arch, uj.arch)
    if key not in cache:
        base = Unit(id="u", stages=list(joined))
        settings = [
            base.model_copy(update={"bundle_size": b, "memory_mb": m, "arch": a})
            for b in sizes
            for a in sorted({ui.arch, uj.arch})
            for m in memories
        ]
        cache[key] = build_menu(space.model, space.workflow, joined, [], [], [], settings)
    return cache[key]


def _fits(state: State, i: int, j: int, menu, apart: float, limit: float) -> int | None:
    """The cheapest setting of the merged unit that costs less than the two apart and
    whose paths stay within ``limit`` (P95, ms) by the bound."""
    cheaper = np.flatnonzero(menu.costs < apart - 1e-15)
    if not len(cheaper):
        return None
    preds = sorted((set(state.preds[i]) | set(state.preds[j])) - {i})
    succs = sorted((set(state.succs[i]) | set(state.succs[j])) - {j})
    start = state.F[preds].max(axis=0) if preds else np.zeros(state.draws)
    tail = (
        (state.dur[succs] + state.T[succs]).max(axis=0) + state.orch
        if succs
        else np.zeros(state.draws)
    )
    upper = np.maximum(state.E, start + state.orch + menu.durations[cheaper] + tail)
    ok = np.flatnonzero(q95(upper, axis=1) <= limit)
    return int(cheaper[ok[0]]) if len(ok) else None


def _rebuilt(space: Space, state: State, merges, rank) -> State:
    """A new state with the ``(i, j, setting)`` merges made, other units as they were."""
    wf = space.workflow
    gone = {n for i, j, _ in merges for n in (i, j)}
    blocks, choices, menus = [], [], []
    for n in state.units:
        if n not in gone:
            blocks.append(state.nodes[n])
            choices.append(state.choice[n])
            menus.append(state.menus[n])
    for i, j, unit in merges:
        joined = merged(wf, state.nodes[i], state.nodes[j], rank)  # type: ignore[arg-type]
        menu, pick = space.menu(joined).with_unit(space.model, wf, unit)
        blocks.append(joined)
        choices.append(pick)
        menus.append(menu)
    return State(space, blocks, choices, menus)


def _blocks_after(state: State, merges, rank) -> list[tuple[str, ...]]:
    gone = {n for i, j, _ in merges for n in (i, j)}
    kept = [state.nodes[n] for n in state.units if n not in gone]
    joined = [
        merged(state.space.workflow, state.nodes[i], state.nodes[j], rank) for i, j, _ in merges
    ]  # type: ignore[arg-type]
    return kept + joined  # type: ignore[return-value]
