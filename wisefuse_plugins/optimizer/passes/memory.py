"""Memory right-sizing: cheapest first, then buy P95 where it is cheapest, then claw back."""

from __future__ import annotations

import numpy as np

from wisefuse_plugins.model.limits import MAX_TIMEOUT_S
from wisefuse_plugins.optimizer.plan import Plan, Unit
from wisefuse_plugins.optimizer.space import TIMEOUT_MARGIN, Space, replace_unit


def cheapest_memory(space: Space, unit: Unit) -> Unit:
    """The (memory, arch) that minimises this unit's own cost (unit costs are separable).

    Sizes at which an invocation's predicted P99 breaks the timeout margin come last: a
    start that is already infeasible would let fusion pile work into units no memory can
    save.
    """
    limit_ms = TIMEOUT_MARGIN * MAX_TIMEOUT_S * 1000
    best, best_key = unit, None
    for arch in space.arches:
        for m in space.memories(unit.stages):
            cand = unit.model_copy(update={"memory_mb": m, "arch": arch})
            p99 = float(np.quantile(space.model.invocation(space.workflow, cand).draws, 0.99))
            key = (p99 > limit_ms, space.model.unit_cost(space.workflow, cand))
            if (
                best_key is None
                or key[0] < best_key[0]
                or (key[0] == best_key[0] and key[1] < best_key[1] - 1e-15)
            ):
                best, best_key = cand, key
    return best


def _moves(space: Space, plan: Plan, unit: Unit, upward: bool) -> list[Plan]:
    out = []
    for arch in space.arches:
        for m in space.memories(unit.stages):
            if (m > unit.memory_mb) if upward else (m < unit.memory_mb):
                out.append(
                    replace_unit(plan, unit, unit.model_copy(update={"memory_mb": m, "arch": arch}))
                )
    return out


def right_size(space: Space, plan: Plan) -> Plan:
    """Meet the SLO at the least cost by changing memory only."""
    current = space.score(plan)
    # 1. while the SLO is missed: the move with the most violation removed per dollar
    while current.violation_s > 0:
        best, best_ratio = None, 0.0
        for unit in plan.units:
            for cand in _moves(space, plan, unit, upward=True):
                s = space.score(cand)
                gain = current.violation_s - s.violation_s
                if not s.feasible or gain <= 1e-9:
                    continue
                extra = s.cost_usd - current.cost_usd
                ratio = float("inf") if extra <= 0 else gain / extra
                if ratio > best_ratio:
                    best, best_ratio = cand, ratio
        if best is None:
            break  # no memory increase helps: the SLO needs fusion/bundling or is out of reach
        plan, current = best, space.score(best)
    # 2. claw back: any memory change (either way) that lowers cost and keeps the SLO
    improved = True
    while improved:
        improved = False
        for unit in list(plan.units):
            for cand in _moves(space, plan, unit, upward=False) + _moves(
                space, plan, unit, upward=True
            ):
                if space.better(cand, plan):
                    plan, improved = cand, True
                    break
    return plan
