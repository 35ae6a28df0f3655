"""Bundle size per mapped unit, chosen together with that unit's memory."""

from __future__ import annotations

from wisefuse_plugins.optimizer.plan import Plan
from wisefuse_plugins.optimizer.space import Space, bundle_candidates, replace_unit


def choose_bundles(space: Space, plan: Plan) -> Plan:
    """For each bundled unit, the best (bundle size, memory, arch) with the rest fixed.

    Sizes are every ``b`` that gives a distinct number of invocations ``ceil(N / b)``
    (a geometric subset when N is large), not only a fixed menu like {1, 2, 5, 10}.
    """
    for unit in [u for u in plan.units if space.bundled(u)]:
        unit = next(u for u in plan.units if u.stages == unit.stages)
        best = plan
        for b in bundle_candidates(space.instances(unit)):
            for arch in space.arches:
                for m in space.memories(unit.stages):
                    cand = replace_unit(
                        plan,
                        unit,
                        unit.model_copy(update={"bundle_size": b, "memory_mb": m, "arch": arch}),
                    )
                    if space.better(cand, best):
                        best = cand
        plan = best
    return plan
