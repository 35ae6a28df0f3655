"""The exhaustive planner: the best plan over a grid, to measure how close the optimizer gets.

The space is every valid fusion (partition of the Python stages into units: connected,
no cycle between units, bundled units of mapped stages linked one-to-one with equal
parallelism) x a bundle size per bundled unit x a memory (and arch) per unit. The grid is
``memory_grid`` (default: the space's own, :data:`~wisefuse_plugins.optimizer.space.MEMORY_GRID`)
and ``bundle_grid`` (default: :func:`~wisefuse_plugins.optimizer.space.bundle_candidates`,
every size giving a distinct invocation count, which is all sizes that matter when N is
small). Give the optimizer the same grid (``optimize(..., memory_grid=...)``) for a fair
comparison.

Exact over that grid, yet fast, because of two facts about the model:

- unit costs add up (:meth:`Model.unit_cost` depends on the unit alone), so the cheapest
  choice for the units not yet fixed bounds the cost of any completion;
- the end-to-end latency is a max of sums of unit durations, computed draw by draw with
  common random numbers, so it can only grow when any unit's draws grow. A setting that
  costs more *and* is slower on every draw than another is never needed (dominance), and
  the fastest draws of the units not yet fixed bound the latency of any completion.

Branch and bound over units in topological order, settings cheapest first, with both
bounds, visits a few thousand nodes where brute force would score ~10^8 plans.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from wisefuse_plugins.optimizer.menu import Menu, build_menu
from wisefuse_plugins.optimizer.partition import valid_partitions
from wisefuse_plugins.optimizer.space import Space, bundle_candidates, unit_id
from wisefuse_plugins.optimizer.state import _topological
from wisefuse_plugins.plan.schema import Plan, Unit

MAX_ORACLE_STAGES = 10
"""Bell(10) = 115,975 partitions: about the most an exhaustive search can enumerate."""

_SLACK_MS = 1e-6
"""The latency bound adds in another order than the model: keep it below by rounding."""

BundleGrid = Sequence[int] | Callable[[int], Sequence[int]]


def oracle(
    space: Space,
    *,
    memory_grid: Sequence[int] | None = None,
    bundle_grid: BundleGrid | None = None,
    max_stages: int = MAX_ORACLE_STAGES,
) -> Plan:
    """The plan with the best score (meets the SLO, then cheapest) over the grid.

    When no plan on the grid meets the SLO, the one that misses it by least (then the
    cheapest) is returned, as the score orders plans; when none is feasible (a unit
    beyond the timeout whatever its setting), the best of those. Raises ``ValueError``
    for more than ``max_stages`` Python stages: partitions grow like Bell(n).
    """
    if memory_grid is not None:
        space = space.variant(memory_grid=tuple(sorted(set(memory_grid))))
    wf = space.workflow
    python = [s for s in wf.topological_order() if wf.stage(s).is_python]
    if len(python) > max_stages:
        raise ValueError(
            f"the oracle enumerates every fusion; {len(python)} Python stages is too many "
            f"(at most {max_stages})"
        )
    search = _Search(space, bundle_grid)
    candidates, stuck = [], []
    for blocks in valid_partitions(wf, python):
        menus = [search.menu(b) for b in blocks]
        found = (sum(float(m.costs[0]) for m in menus), blocks, menus)
        # a block no setting runs within the timeout makes the plan infeasible
        (candidates if all(m.feasible for m in menus) else stuck).append(found)
    candidates = candidates or stuck  # none feasible: the best of the infeasible ones
    candidates.sort(key=lambda c: c[0])
    for bound, blocks, menus in candidates:
        if search.best_key[0] == 0.0 and bound >= search.best_key[1]:
            break  # every remaining partition costs more than the best plan meeting the SLO
        search.run(blocks, menus)
    taken: set[str] = set()
    units = []
    for unit in search.best or []:
        uid = unit_id(unit.stages, taken)
        taken.add(uid)
        units.append(unit.model_copy(update={"id": uid}))
    return space.plan(units, planner="oracle")


class _Search:
    """Branch and bound over the settings of one partition's units; keeps the best plan."""

    def __init__(self, space: Space, bundle_grid: BundleGrid | None) -> None:
        self.space = space
        self.model = space.model
        self.bundle_grid = bundle_grid
        self.orch = self.model.platform.orchestration_ms
        self._menus: dict[tuple[str, ...], Menu] = {}
        self._opaque = {
            s.id: self.model.opaque_duration(s.id) for s in space.workflow.stages if not s.is_python
        }
        self.best: list[Unit] | None = None
        self.best_key: tuple[float, float] = (math.inf, math.inf)

    def sizes(self, n: int) -> list[int]:
        if self.bundle_grid is None:
            return bundle_candidates(n)
        grid = self.bundle_grid(n) if callable(self.bundle_grid) else self.bundle_grid
        return sorted({min(max(1, int(b)), n) for b in grid})

    def menu(self, block: tuple[str, ...]) -> Menu:
        """Every (bundle, arch, memory) of the block within limits, less the dominated ones."""
        menu = self._menus.get(block)
        if menu is None:
            space, wf = self.space, self.space.workflow
            menu = build_menu(
                self.model,
                wf,
                block,
                space.memories(list(block)),
                self.sizes(wf.stage(block[0]).parallelism),
                space.arches,
            )
            self._menus[block] = menu
        return menu

    def run(self, blocks: list[tuple[str, ...]], menus: list[Menu]) -> None:
        """Search one partition; ``self.best`` improves when a better plan is found."""
        wf = self.space.workflow
        owner = {s: b for b in blocks for s in b}
        nodes = _topological(wf, owner)  # blocks (tuples) and opaque stage ids
        index = {n: i for i, n in enumerate(nodes)}
        by_block = dict(zip(blocks, menus, strict=True))
        preds: list[set[int]] = [set() for _ in nodes]
        for e in wf.edges:
            a, b = index[owner.get(e.src, e.src)], index[owner.get(e.dst, e.dst)]
            if a != b:
                preds[b].add(a)
        k = len(nodes)
        draws = self.model.draws
        # per node: settings (cost, durations); an opaque stage has one, free
        costs: list[np.ndarray] = []
        durs: list[np.ndarray] = []
        fast: list[np.ndarray] = []
        for n in nodes:
            if isinstance(n, tuple):
                costs.append(by_block[n].costs)
                durs.append(by_block[n].durations)
                fast.append(by_block[n].fastest)
            else:
                d = self._opaque[n]
                costs.append(np.zeros(1))
                durs.append(d[None, :])
                fast.append(d)
        # tail[i]: the longest way from node i's end to the end, every node at its fastest
        succs: list[list[int]] = [[] for _ in nodes]
        for b in range(k):
            for a in preds[b]:
                succs[a].append(b)
        tail = [np.zeros(draws) for _ in nodes]
        for i in reversed(range(k)):
            for j in succs[i]:
                tail[i] = np.maximum(tail[i], self.orch + fast[j] + tail[j])
        # paths that start at a source not yet fixed, from position t on
        from_sources = [np.zeros(draws) for _ in range(k + 1)]
        for t in reversed(range(k)):
            here = self.orch + fast[t] + tail[t] if not preds[t] else np.zeros(draws)
            from_sources[t] = np.maximum(from_sources[t + 1], here)
        rest_cost = np.concatenate([np.cumsum([c[0] for c in costs][::-1])[::-1], [0.0]])
        slo_s = self.space.slo_s
        choice = [0] * k
        finish: list[np.ndarray] = [np.zeros(0)] * k

        def key_of(e2e_ms: np.ndarray, cost: float) -> tuple[float, float]:
            p95 = float(np.quantile(e2e_ms / 1000, 0.95))
            return (round(max(0.0, p95 - slo_s), 9), cost)

        def dfs(t: int, cost: float, reach: np.ndarray) -> None:
            # reach: elementwise lower bound of the E2E of any completion
            if t == k:  # the E2E exactly as Model.predict computes it
                key = key_of(np.max(np.vstack(finish), axis=0), cost)
                if key < self.best_key:
                    self.best_key = key
                    self.best = [
                        by_block[n].units[choice[i]]
                        for i, n in enumerate(nodes)
                        if isinstance(n, tuple)
                    ]
                return
            start = (
                np.max(np.vstack([finish[p] for p in preds[t]]), axis=0)
                if preds[t]
                else np.zeros(draws)
            )
            for c in range(len(costs[t])):
                total = cost + float(costs[t][c]) + rest_cost[t + 1]
                if self.best_key[0] == 0.0 and total >= self.best_key[1]:
                    break  # cheapest first: every later setting costs more
                end = start + self.orch + durs[t][c]
                bound = np.maximum(reach, end + tail[t])
                lower = np.maximum(bound, from_sources[t + 1]) - _SLACK_MS
                if key_of(lower, total) >= self.best_key:
                    continue
                choice[t] = c
                finish[t] = end
                dfs(t + 1, cost + float(costs[t][c]), bound)

        dfs(0, 0.0, np.zeros(draws))
