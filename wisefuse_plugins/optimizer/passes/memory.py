"""The memory pass: each unit's setting (memory, arch, bundle size) with the fusion fixed."""

from __future__ import annotations

from wisefuse_plugins.optimizer.sizing import settle
from wisefuse_plugins.optimizer.space import Space
from wisefuse_plugins.optimizer.state import state_of
from wisefuse_plugins.plan.schema import Plan


def right_size(space: Space, plan: Plan) -> Plan:
    """Meet the SLO at the least cost by changing each unit's setting (fusion fixed).

    Applies to every unit, on every plan: a unit moves to another setting of its menu when
    that lowers the plan's ``(SLO violation, cost)`` (the steps of
    :func:`~wisefuse_plugins.optimizer.sizing.settle`, from the settings ``plan`` holds).
    """
    state = state_of(space, plan)
    settle(state)
    return state.plan(**plan.meta)
