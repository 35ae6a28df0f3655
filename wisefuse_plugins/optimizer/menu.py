"""The settings worth considering for one unit: its menu of (bundle size, arch, memory).

A unit's cost depends on the unit alone and the end-to-end latency can only grow when a
unit's duration draws grow (a max of sums, draw by draw, with common random numbers). So a
setting that costs at least as much as another and is no faster on any draw is never
needed: a menu keeps the others (the Pareto set), cheapest first. Both the optimizer and
the exhaustive oracle choose from menus; the grids they are built on decide what is
reachable, so giving both the same grids makes their comparison fair.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from wisefuse_plugins.ir import Workflow
from wisefuse_plugins.model.predict import Model
from wisefuse_plugins.plan.limits import MAX_TIMEOUT_S, MAX_VCPUS, MB_PER_VCPU
from wisefuse_plugins.plan.schema import Unit, is_bundled_unit

TIMEOUT_MARGIN = 0.8
"""A unit's predicted P99 invocation must stay under 80% of the 900 s timeout."""

LIMIT_MS = TIMEOUT_MARGIN * MAX_TIMEOUT_S * 1000


def quantile(x: np.ndarray, q: float, axis: int = -1) -> np.ndarray | float:
    """``np.quantile(x, q, axis)`` (linear interpolation) by partial sorting, which is
    several times faster on the short arrays the planner takes thousands of quantiles of."""
    n = x.shape[axis]
    h = (n - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, n - 1)
    part = np.partition(x, (lo, hi), axis=axis)
    a = np.take(part, lo, axis=axis)
    b = np.take(part, hi, axis=axis)
    out = a + (h - lo) * (b - a)
    return float(out) if np.ndim(out) == 0 else out


@dataclass
class Menu:
    """The non-dominated settings of one group of stages, cheapest first.

    ``durations[c]`` are the draws (ms) from the unit's start to its last invocation's
    end with setting ``c``; ``p95`` their 95th percentiles (a scalar handle on speed).
    """

    stages: tuple[str, ...]
    units: list[Unit]
    costs: np.ndarray  # (c,)
    durations: np.ndarray  # (c, draws)
    p95: np.ndarray  # (c,)
    feasible: bool = True  # False: no setting runs within the timeout (all kept)

    def __len__(self) -> int:
        return len(self.units)

    @property
    def fastest(self) -> np.ndarray:
        """Elementwise minimum of the durations: no completion of a plan is faster."""
        return self.durations.min(axis=0)

    def index(self, unit: Unit) -> int | None:
        for i, u in enumerate(self.units):
            if (u.bundle_size, u.memory_mb, u.arch) == (
                unit.bundle_size,
                unit.memory_mb,
                unit.arch,
            ):
                return i
        return None

    def with_unit(self, model: Model, workflow: Workflow, unit: Unit) -> tuple[Menu, int]:
        """This menu with ``unit``'s setting in it (added when dominated or off the grid)."""
        found = self.index(unit)
        if found is not None:
            return self, found
        base = self.units[0] if self.units else unit
        unit = base.model_copy(
            update={"bundle_size": unit.bundle_size, "memory_mb": unit.memory_mb, "arch": unit.arch}
        )
        cost = model.unit_cost(workflow, unit)
        dur = model.unit_duration(workflow, unit)[0]
        at = int(np.searchsorted(self.costs, cost, side="right"))
        units = [*self.units[:at], unit, *self.units[at:]]
        costs = np.insert(self.costs, at, cost)
        durs = np.insert(self.durations.reshape(len(self.units), -1), at, dur, axis=0)
        p95 = np.insert(self.p95, at, float(np.quantile(dur, 0.95)))
        return Menu(self.stages, units, costs, durs, p95, self.feasible), at


def build_menu(
    model: Model,
    workflow: Workflow,
    stages: Sequence[str],
    memories: Sequence[int] | Callable[[int], Sequence[int]],
    sizes: Sequence[int],
    arches: Sequence[str],
    settings: Sequence[Unit] | None = None,
) -> Menu:
    """Score every (bundle size, arch, memory) of a unit of ``stages``; keep the Pareto set.

    ``sizes`` only apply when every stage is mapped (otherwise the bundle size is 1);
    ``memories`` may depend on the bundle size. Settings whose P99 invocation would come
    within 20% of the timeout are left out (all are kept when none is within it).
    ``settings`` replaces the grid by a list of units of ``stages``. Units whose
    instances would contend for the interpreter lock on several threads
    (:meth:`Model.contended`) are left out.
    """
    base = Unit(id="u", stages=list(stages))
    if not is_bundled_unit(base, workflow):
        sizes = [1]
    if settings is None:
        settings = [
            base.model_copy(update={"bundle_size": b, "memory_mb": m, "arch": arch})
            for b in sizes
            for arch in arches
            for m in (memories(b) if callable(memories) else memories)
        ]
    units: list[Unit] = []
    durs: list[np.ndarray] = []
    invs: list[np.ndarray] = []
    costs: list[float] = []
    for unit in settings:
        if model.contended(workflow, unit):
            continue
        invs.append(model.invocation(workflow, unit).draws)
        durs.append(model.unit_duration(workflow, unit)[0])
        costs.append(model.unit_cost(workflow, unit))
        units.append(unit)
    if not units:
        return _empty(tuple(stages), model.draws)
    ok = quantile(np.vstack(invs), 0.99) <= LIMIT_MS
    keep = [i for i in range(len(units)) if ok[i]]
    if not keep:  # no plan with this unit is feasible: keep planning with all settings,
        # so the caller gets the best infeasible plan and the reason (and fusion avoids it)
        menu = pareto(tuple(stages), units, np.array(costs), np.vstack(durs))
        menu.feasible = False
        return menu
    return pareto(
        tuple(stages),
        [units[i] for i in keep],
        np.array([costs[i] for i in keep]),
        np.vstack([durs[i] for i in keep]) if keep else np.zeros((0, model.draws)),
    )


def pareto(stages: tuple[str, ...], units: list[Unit], costs: np.ndarray, durs: np.ndarray) -> Menu:
    """Drop settings that cost at least as much as another and are no faster on any draw."""
    if not units:
        return _empty(stages, durs.shape[1] if durs.ndim == 2 else 0)
    order = np.argsort(costs, kind="stable")
    keep: list[int] = []
    kept = np.empty((len(units), durs.shape[1]))
    for i in order:
        if keep and np.any(np.all(kept[: len(keep)] <= durs[i], axis=1)):
            continue  # a cheaper (or equal) setting kept before is at least as fast everywhere
        kept[len(keep)] = durs[i]
        keep.append(int(i))
    durations = kept[: len(keep)].copy()
    return Menu(
        stages,
        [units[i] for i in keep],
        costs[keep],
        durations,
        quantile(durations, 0.95),
    )


def _empty(stages: tuple[str, ...], draws: int) -> Menu:
    return Menu(stages, [], np.zeros(0), np.zeros((0, draws)), np.zeros(0))


def useful_memories(memories: Sequence[int], vcpus_used: float) -> list[int]:
    """``memories`` up to the first that gives the unit every vCPU it can keep busy.

    A unit whose jobs keep ``v`` vCPUs busy runs no faster with more than ``v`` (Lambda
    gives ``memory / 1769``), so larger sizes only cost more: they would be dominated.
    """
    cap = min(vcpus_used, MAX_VCPUS) * MB_PER_VCPU
    out = []
    for m in sorted(memories):
        out.append(m)
        if m >= cap:
            break
    return out
