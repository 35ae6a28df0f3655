"""The planner: ``optimize`` (cheapest plan meeting an SLO) and ``frontier`` (cost vs P95)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.ir import Workflow
from wisefuse_plugins.model.limits import MAX_TIMEOUT_S
from wisefuse_plugins.model.predict import Model, Prediction
from wisefuse_plugins.optimizer.baselines import BASELINES, user_max
from wisefuse_plugins.optimizer.passes import PASSES, cheapest_memory
from wisefuse_plugins.optimizer.plan import Plan, Unit
from wisefuse_plugins.optimizer.space import TIMEOUT_MARGIN, Space, parse_slo, signature

log = logging.getLogger(__name__)


@dataclass
class Planned:
    """A plan with its prediction and whether it meets the SLO it was made for."""

    planner: str
    plan: Plan
    prediction: Prediction
    slo_s: float
    meets_slo: bool


def _space(
    workflow: Workflow, model: Model, slo: float | str, arches: tuple[str, ...] | None
) -> Space:
    space = Space(workflow, model, arches=arches or ("x86_64", "arm64"))
    ref = (
        space.score(user_max(space)).p95_s
        if isinstance(slo, str) and slo.strip().lower().endswith("x")
        else None
    )
    space.slo_s = parse_slo(slo, ref)
    return space


def _finish(space: Space, name: str, plan: Plan) -> Planned:
    s = space.score(plan)
    meta = {
        **plan.meta,
        "planner": name,
        "slo_s": space.slo_s,
        "predicted_p95_s": s.p95_s,
        "predicted_cost_usd": s.cost_usd,
    }
    plan = plan.model_copy(update={"meta": meta})
    return Planned(name, plan, s.prediction, space.slo_s, s.violation_s == 0 and s.feasible)


def initial_plan(space: Space) -> Plan:
    """Every stage alone, each at its cheapest memory."""
    units = [
        cheapest_memory(space, Unit(id=s.id, stages=[s.id])) for s in space.workflow.python_stages
    ]
    return space.plan(units)


def search(space: Space, max_rounds: int = 6) -> Plan:
    plan = initial_plan(space)
    for _ in range(max_rounds):
        before = signature(plan)
        for rule in PASSES:
            plan = rule(space, plan)
        if signature(plan) == before:
            break
    return plan


def optimize(
    workflow: Workflow,
    model: Model,
    slo: float | str,
    *,
    objective: str = "cost",
    arches: tuple[str, ...] | None = None,
) -> Planned:
    """The cheapest plan whose predicted P95 meets ``slo`` (seconds, or ``"1.5x"`` of User-Max).

    ``objective="latency"`` returns the fastest plan instead. When no plan meets the SLO,
    the result says so (``meets_slo=False``) and holds the fastest plan found.
    """
    space = _space(workflow, model, slo, arches)
    if objective == "latency":
        target = space.slo_s
        space.slo_s = 0.0
        plan = search(space)
        space.slo_s = target
        space._cache.clear()
        _refuse_over_timeout(space, plan)
        return _finish(space, "wisefuse", plan)
    if objective != "cost":
        raise ValueError(f"objective must be 'cost' or 'latency', got {objective!r}")
    plan = search(space)
    result = _finish(space, "wisefuse", plan)
    if not result.meets_slo:
        _refuse_over_timeout(space, plan)
        fastest = optimize(workflow, model, slo, objective="latency", arches=arches)
        log.warning(
            "no plan meets the SLO of %.3f s; the fastest found has P95 %.3f s",
            space.slo_s,
            fastest.prediction.p95_s,
        )
        best = fastest if fastest.prediction.p95_s < result.prediction.p95_s else result
        return Planned("wisefuse", best.plan, best.prediction, space.slo_s, False)
    return result


class PlanningError(WiseFuseError):
    """No plan can run the workflow within Lambda's limits."""


def _refuse_over_timeout(space: Space, plan: Plan) -> None:
    """Raise when the best plan still has an invocation over the timeout margin.

    Only a stage that is too long on its own gets here: the passes never fuse stages into a
    unit that breaks the margin when a smaller unit would not.
    """
    if space.score(plan).feasible:
        return
    limit_s = TIMEOUT_MARGIN * MAX_TIMEOUT_S
    by_unit = {u.unit: u for u in space.score(plan).prediction.units}
    over = [u for u in plan.units if by_unit[u.id].p99_invocation_ms / 1000 > limit_s]
    if not over:
        return
    worst = max(over, key=lambda u: by_unit[u.id].p99_invocation_ms)
    stages = ", ".join(repr(s) for u in over for s in u.stages)
    raise PlanningError(
        f"stage(s) {stages} of {space.workflow.name!r} are predicted to take "
        f"{by_unit[worst.id].p99_invocation_ms / 1000:.0f} s (P99) per invocation even at "
        f"{worst.memory_mb} MB: more than {limit_s:.0f} s, 80% of Lambda's {MAX_TIMEOUT_S:.0f} s timeout",
        hint="split the task into smaller ones, or leave it out of the plan (keep it in its framework)",
    )


def baseline(
    workflow: Workflow, model: Model, name: str, slo: float | str = math.inf, *, arches=None
) -> Planned:
    """Plan with one of :data:`BASELINES` (``slo`` only decides ``meets_slo``)."""
    space = _space(workflow, model, slo, arches or ("x86_64",))
    try:
        planner = BASELINES[name]
    except KeyError:
        raise ValueError(f"unknown planner {name!r}; choose from {sorted(BASELINES)}") from None
    return _finish(space, name, planner(space))


def frontier(workflow: Workflow, model: Model, *, points: int = 12, arches=None) -> list[Planned]:
    """The cost / P95 Pareto frontier: plans optimized for SLOs from the fastest to User-Min's P95."""
    fastest = optimize(workflow, model, 1e9, objective="latency", arches=arches).prediction.p95_s
    slowest = baseline(workflow, model, "user-min").prediction.p95_s
    hi = max(slowest, fastest * 1.01)
    slos = [fastest * (hi / fastest) ** (i / (points - 1)) for i in range(points)]
    found = [optimize(workflow, model, s, arches=arches) for s in slos]
    found = [p for p in found if p.meets_slo]
    found.sort(key=lambda p: (p.prediction.p95_s, p.prediction.cost_usd))
    pareto: list[Planned] = []
    for p in found:
        if not pareto or p.prediction.cost_usd < pareto[-1].prediction.cost_usd - 1e-15:
            pareto.append(p)
    return pareto
