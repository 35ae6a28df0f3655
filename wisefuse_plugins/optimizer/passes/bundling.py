"""The bundling pass: the bundle size of each mapped unit, chosen with its memory and arch."""

from __future__ import annotations

from wisefuse_plugins.optimizer.sizing import SMALL_UNITS
from wisefuse_plugins.optimizer.space import Space
from wisefuse_plugins.optimizer.state import q95, state_of
from wisefuse_plugins.plan.schema import Plan


def choose_bundles(space: Space, plan: Plan) -> Plan:
    """For each bundled unit, the best (bundle size, memory, arch) with the rest fixed.

    Applies to a bundled unit (every stage mapped, linked one-to-one) of a plan of at most
    :data:`~wisefuse_plugins.optimizer.sizing.SMALL_UNITS` units, when another setting of
    its menu lowers the plan's ``(SLO violation, cost)`` with every other unit as it is;
    units are taken in the plan's topological order, each seeing the changes before it.

    Sizes are every ``b`` that gives a distinct number of invocations ``ceil(N / b)``
    (a geometric subset when N is large), not only a fixed menu like {1, 2, 5, 10}; each
    unit's menu holds the non-dominated ones. On large plans this is left to
    :func:`right_size`, whose greedy moves range over the same menus.

    A bundle holds instances of its unit's own stages only, which share one set of
    scheduling settings (fusion and the plan check keep each unit to one:
    :mod:`wisefuse_plugins.plan.scheduling`), so bundling needs no such check of its own.
    """
    state = state_of(space, plan)
    if len(state.units) > SMALL_UNITS:
        return plan
    changed = False
    for i in state.units:
        menu = state.menus[i]
        assert menu is not None
        if not space.bundled(menu.units[0]):
            continue
        best_c, best_key = state.choice[i], state.key()
        for c in range(len(menu)):
            e2e = state.peek(i, menu.durations[c])
            viol = max(0.0, q95(e2e) / 1000 - space.slo_s)
            key = (round(viol, 9), state.cost - state.costs[i] + float(menu.costs[c]))
            if key < best_key:
                best_c, best_key = c, key
        if best_c != state.choice[i]:
            state.set(i, best_c)
            changed = True
    return state.plan(**plan.meta) if changed else plan
