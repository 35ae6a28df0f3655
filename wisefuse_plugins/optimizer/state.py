"""A plan under search: its unit graph, each unit's menu and choice, and finish times kept
up to date when one unit changes.

Scoring a candidate with :meth:`Model.predict` walks the whole unit graph; on a 2,000-unit
plan that is ~0.1 s, and a search scores thousands of candidates. Here the draws of each
unit's finish time ``F`` (from the run's start) and tail ``T`` (the longest way from its
end to the run's end) are kept, so that

- changing one unit re-walks only the units whose finish actually moves (usually a few
  along the critical path: the walk stops where a max does not change);
- ``max(E, S + orch + d + T)`` bounds the end-to-end draws ``E`` of any change of one unit
  from above (exact when the unit only gets slower), with no walk at all;
- the slack ``E - (F + T)`` says, per draw, which units are on the longest path.

Everything is in ms, draw by draw (common random numbers), computed as the model does
(``finish = start + orchestration + duration``), so a state's P95 is the model's.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np

from wisefuse_plugins.optimizer.menu import Menu, quantile
from wisefuse_plugins.optimizer.space import Space, unit_id
from wisefuse_plugins.plan.schema import Plan

SLACK_EPS_MS = 1e-6
"""Slack below this (ms) counts as none: the unit is on the longest path in that draw."""


def q95(x: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """``np.quantile(x, 0.95, axis)``, faster (see :func:`menu.quantile`)."""
    return quantile(x, 0.95, axis)


class State:
    """Units (by their stages) in a topological order of the unit graph, with choices.

    Parameters
    ----------
    space
        The workflow, model, SLO and menus.
    blocks
        The partition: each block the stages of one unit (opaque stages are added).
    choices
        Per block, the menu index to start from (default: the cheapest).
    menus
        Per block, a menu to use instead of ``space.menu(block)``.
    """

    def __init__(
        self,
        space: Space,
        blocks: Sequence[Sequence[str]],
        choices: Sequence[int] | None = None,
        menus: Sequence[Menu] | None = None,
    ) -> None:
        self.space = space
        wf = space.workflow
        self.orch = space.model.platform.orchestration_ms
        self.draws = space.model.draws
        blocks = [tuple(b) for b in blocks]
        owner = {s: b for b in blocks for s in b}
        self.nodes: list[tuple[str, ...] | str] = _topological(wf, owner)
        index = {n: i for i, n in enumerate(self.nodes)}
        k = len(self.nodes)
        preds: list[set[int]] = [set() for _ in range(k)]
        for e in wf.edges:
            a, b = index[owner.get(e.src, e.src)], index[owner.get(e.dst, e.dst)]
            if a != b:
                preds[b].add(a)
        self.preds = [sorted(p) for p in preds]
        self.succs: list[list[int]] = [[] for _ in range(k)]
        for b in range(k):
            for a in self.preds[b]:
                self.succs[a].append(b)
        self.sinks = np.array([i for i in range(k) if not self.succs[i]], dtype=int)
        self.is_sink = np.zeros(k, dtype=bool)
        self.is_sink[self.sinks] = True
        self.menus: list[Menu | None] = [None] * k
        self.choice = [0] * k
        self.dur = np.zeros((k, self.draws))
        self.costs = np.zeros(k)
        given = {b: i for i, b in enumerate(blocks)}
        for i, node in enumerate(self.nodes):
            if isinstance(node, tuple):
                at = given[node]
                menu = menus[at] if menus is not None else space.menu(node)
                self.menus[i] = menu
                c = choices[at] if choices is not None else 0
                self.choice[i] = c
                self.dur[i] = menu.durations[c]
                self.costs[i] = menu.costs[c]
            else:
                self.dur[i] = space.model.opaque_duration(node)
        self.units = [i for i in range(k) if self.menus[i] is not None]
        self.F = np.zeros((k, self.draws))
        self.T = np.zeros((k, self.draws))
        self._forward_levels = _levels(self.preds)
        self._backward_levels = _levels(self.succs)
        self.full()

    # -- evaluation -------------------------------------------------------------------

    def full(self, tails: bool = True) -> None:
        """Recompute every finish (and tail) after many changes, or to start.

        Level by level (a node's level is its longest distance from a source), each level
        in a few array operations: a 2,000-unit plan takes milliseconds, not a Python
        loop over units. ``tails=False`` skips the tails when only the end is needed.
        """
        orch = self.orch
        for nodes, srcs, cuts in self._forward_levels:
            if srcs is None:
                self.F[nodes] = orch + self.dur[nodes]  # as 0 + orch + dur
            else:
                start = np.maximum.reduceat(self.F[srcs], cuts, axis=0)
                self.F[nodes] = start + orch + self.dur[nodes]
        if tails:
            for nodes, dsts, cuts in self._backward_levels:
                if dsts is None:
                    self.T[nodes] = 0.0
                else:
                    after = self.dur[dsts] + self.T[dsts]
                    self.T[nodes] = np.maximum.reduceat(after, cuts, axis=0) + orch
        self._ends()

    def start(self, i: int) -> np.ndarray:
        p = self.preds[i]
        if not p:
            return np.zeros(self.draws)
        if len(p) == 1:
            return self.F[p[0]]
        return self.F[p].max(axis=0)

    def _tail(self, i: int) -> np.ndarray:
        s = self.succs[i]
        if not s:
            return np.zeros(self.draws)
        return (self.dur[s] + self.T[s]).max(axis=0) + self.orch

    def _ends(self) -> None:
        """E2E draws, and per draw the sink that ends last and the runner-up's time."""
        m = self.F[self.sinks]
        cols = np.arange(self.draws)
        a1 = m.argmax(axis=0)
        self.E = m[a1, cols]
        self.last = self.sinks[a1]
        if len(self.sinks) > 1:
            m = m.copy()
            m[a1, cols] = -np.inf
            a2 = m.argmax(axis=0)
            self.second = m[a2, cols]
            self.second_node = self.sinks[a2]
        else:
            self.second = np.full(self.draws, -np.inf)
            self.second_node = np.full(self.draws, -1)

    @property
    def cost(self) -> float:
        return float(self.costs.sum())

    def p95_s(self, e2e: np.ndarray | None = None) -> float:
        return q95(self.E if e2e is None else e2e) / 1000  # type: ignore[operator]

    def violation(self, e2e: np.ndarray | None = None) -> float:
        return max(0.0, self.p95_s(e2e) - self.space.slo_s)

    def key(self) -> tuple[float, float]:
        """As :meth:`Score.key` orders plans (every setting on a menu is feasible)."""
        return (round(self.violation(), 9), self.cost)

    def slack(self) -> np.ndarray:
        """(units, draws): how much later each node could end before the run ends later."""
        return self.E - (self.F + self.T)

    # -- changes ----------------------------------------------------------------------

    def set(self, i: int, c: int) -> None:
        """Switch node ``i`` to menu entry ``c`` and update finishes, tails and the end."""
        menu = self.menus[i]
        assert menu is not None
        self.choice[i] = c
        self.costs[i] = menu.costs[c]
        self.dur[i] = menu.durations[c]
        sinks = self._forward(i)
        self._backward(i)
        if sinks:
            self._ends()

    def _forward(self, i: int) -> bool:
        heap, queued, sink_moved = [i], {i}, False
        while heap:
            j = heapq.heappop(heap)
            f = self.start(j) + self.orch + self.dur[j]
            if np.array_equal(f, self.F[j]):
                continue
            self.F[j] = f
            sink_moved |= bool(self.is_sink[j])
            for s in self.succs[j]:
                if s not in queued:
                    queued.add(s)
                    heapq.heappush(heap, s)
        return sink_moved

    def _backward(self, i: int) -> None:
        heap = [-p for p in self.preds[i]]
        queued = set(self.preds[i])
        heapq.heapify(heap)
        while heap:
            j = -heapq.heappop(heap)
            t = self._tail(j)
            if np.array_equal(t, self.T[j]):
                continue
            self.T[j] = t
            for p in self.preds[j]:
                if p not in queued:
                    queued.add(p)
                    heapq.heappush(heap, -p)

    def peek(self, i: int, dur: np.ndarray) -> np.ndarray:
        """The end-to-end draws if node ``i`` took ``dur``: exact, nothing changed."""
        new: dict[int, np.ndarray] = {}
        heap, queued = [i], {i}
        while heap:
            j = heapq.heappop(heap)
            p = self.preds[j]
            if not p:
                start = np.zeros(self.draws)
            else:
                start = new.get(p[0], self.F[p[0]])
                for q in p[1:]:
                    start = np.maximum(start, new.get(q, self.F[q]))
            f = start + self.orch + (dur if j == i else self.dur[j])
            if np.array_equal(f, self.F[j]):
                continue
            new[j] = f
            for s in self.succs[j]:
                if s not in queued:
                    queued.add(s)
                    heapq.heappush(heap, s)
        moved = [j for j in new if self.is_sink[j]]
        if not moved:
            return self.E
        changed = np.array(moved)
        rest = np.where(
            np.isin(self.last, changed),
            np.where(np.isin(self.second_node, changed), np.nan, self.second),
            self.E,
        )
        if np.isnan(rest).any():  # the two last sinks both moved: take the max the long way
            others = self.sinks[~np.isin(self.sinks, changed)]
            rest = self.F[others].max(axis=0) if len(others) else np.full(self.draws, -np.inf)
        out = rest
        for j in moved:
            out = np.maximum(out, new[j])
        return out

    def bound(self, i: int, durs: np.ndarray) -> np.ndarray:
        """(c, draws) upper bounds of the E2E draws for each row of ``durs`` at node ``i``.

        Paths avoiding ``i`` keep their length (at most ``E``); paths through it become
        ``start + orch + dur + tail``. Exact when ``dur`` is no faster than now.
        """
        return np.maximum(self.E, self.start(i) + self.orch + durs + self.T[i])

    def lower(self, i: int, durs: np.ndarray) -> np.ndarray:
        """(c, draws) lower bounds of the E2E draws for each row of ``durs`` at node ``i``.

        Where ``i`` has slack the longest path avoids it and stays; where it has none the
        run ends earlier by at most what ``i`` gains.
        """
        through = self.start(i) + self.orch + durs + self.T[i]
        critical = self.E - (self.F[i] + self.T[i]) <= SLACK_EPS_MS
        gain = np.maximum(self.dur[i] - durs, 0.0)
        return np.maximum(np.where(critical, self.E - gain, self.E), through)

    # -- output -----------------------------------------------------------------------

    def blocks(self) -> list[tuple[str, ...]]:
        return [n for n in self.nodes if isinstance(n, tuple)]

    def plan(self, **meta) -> Plan:
        units, taken = [], set()
        for i in self.units:
            menu = self.menus[i]
            assert menu is not None
            unit = menu.units[self.choice[i]]
            uid = unit_id(list(unit.stages))  # the same as with ``taken`` unless it clashes
            if uid in taken:  # (and safe_name copies ``taken``: quadratic on large plans)
                uid = unit_id(list(unit.stages), taken)
            taken.add(uid)
            units.append(unit.model_copy(update={"id": uid}))
        return self.space.plan(units, **meta)


def _levels(
    inbound: list[list[int]],
) -> list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]:
    """Nodes grouped by level along ``inbound`` edges (preds: from the sources; succs: from
    the sinks), each level with its nodes' inbound lists concatenated and where each
    starts: what ``np.maximum.reduceat`` needs to take every node's max in one call."""
    level = [0] * len(inbound)
    for i in _order(inbound):
        if inbound[i]:
            level[i] = 1 + max(level[j] for j in inbound[i])
    groups: dict[int, list[int]] = {}
    for i, lv in enumerate(level):
        groups.setdefault(lv, []).append(i)
    out = []
    for lv in sorted(groups):
        nodes = groups[lv]
        if lv == 0:
            out.append((np.array(nodes), None, None))
            continue
        flat, cuts = [], []
        for i in nodes:
            cuts.append(len(flat))
            flat.extend(inbound[i])
        out.append((np.array(nodes), np.array(flat), np.array(cuts)))
    return out


def _order(inbound: list[list[int]]) -> list[int]:
    """A topological order along ``inbound`` edges (every inbound node first)."""
    indeg = [len(x) for x in inbound]
    out_edges: list[list[int]] = [[] for _ in inbound]
    for i, x in enumerate(inbound):
        for j in x:
            out_edges[j].append(i)
    ready = [i for i, d in enumerate(indeg) if d == 0]
    order = []
    while ready:
        i = ready.pop()
        order.append(i)
        for j in out_edges[i]:
            indeg[j] -= 1
            if indeg[j] == 0:
                ready.append(j)
    return order


def _topological(wf, owner: dict[str, tuple[str, ...]]) -> list[tuple[str, ...] | str]:
    """Units and opaque stages in a topological order of the unit graph.

    Not simply by first stage: unit {a, c} with a -> c may depend on unit {b} via b -> c.
    Ties go to the earlier stage in the workflow's order, so the order is deterministic.
    """
    order = wf.topological_order()
    rank: dict[tuple[str, ...] | str, int] = {}
    for i, s in enumerate(order):
        rank.setdefault(owner.get(s, s), i)
    succ: dict[tuple[str, ...] | str, set] = {n: set() for n in rank}
    indeg = dict.fromkeys(rank, 0)
    for e in wf.edges:
        a, b = owner.get(e.src, e.src), owner.get(e.dst, e.dst)
        if a != b and b not in succ[a]:
            succ[a].add(b)
            indeg[b] += 1
    ready = [(rank[n], n) for n in rank if indeg[n] == 0]
    heapq.heapify(ready)
    out: list[tuple[str, ...] | str] = []
    while ready:
        _, node = heapq.heappop(ready)
        out.append(node)
        for nxt in succ[node]:
            indeg[nxt] -= 1
            if indeg[nxt] == 0:
                heapq.heappush(ready, (rank[nxt], nxt))
    if len(out) != len(rank):
        raise ValueError("the units depend on each other in a cycle")
    return out


def state_of(space: Space, plan: Plan) -> State:
    """The state of ``plan``: its units with their settings (added to a menu when missing)."""
    blocks, choices, menus = [], [], []
    for unit in plan.units:
        block = tuple(unit.stages)
        menu, c = space.menu(block).with_unit(space.model, space.workflow, unit)
        blocks.append(block)
        choices.append(c)
        menus.append(menu)
    return State(space, blocks, choices, menus)
