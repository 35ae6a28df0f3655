"""The planner: ``optimize`` (cheapest plan meeting an SLO) and ``frontier`` (cost vs P95)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.ir import Workflow
from wisefuse_plugins.model.predict import Model, Prediction
from wisefuse_plugins.optimizer.baselines import BASELINES, Planner, user_max
from wisefuse_plugins.optimizer.menu import LIMIT_MS, build_menu, quantile
from wisefuse_plugins.optimizer.oracle import oracle
from wisefuse_plugins.optimizer.passes import PASSES
from wisefuse_plugins.optimizer.sizing import SMALL_UNITS, claw_back, meet
from wisefuse_plugins.optimizer.space import (
    MEMORY_GRID,
    Space,
    is_relative,
    parse_slo,
    profiled_arches,
    signature,
)
from wisefuse_plugins.optimizer.state import State
from wisefuse_plugins.plan.limits import MAX_TIMEOUT_S
from wisefuse_plugins.plan.schema import Plan, Unit

log = logging.getLogger(__name__)


@dataclass
class Planned:
    """A plan with its prediction and whether it meets the SLO it was made for."""

    planner: str
    plan: Plan
    prediction: Prediction
    slo_s: float
    meets_slo: bool


SLO_HEADROOM = 0.15
"""How far under the SLO the CLI and the demo plan by default: the model's median P95
error on held-out plans of the example apps (``benchmarks/model_accuracy.py``) is about
10%, mostly on the slow side below one vCPU, and an SLO is judged by the measured P95
(with 10%, ``benchmarks/apps.py`` still missed SLOs by 2-6% as measured)."""

PLANNERS: dict[str, Planner] = {**BASELINES, "oracle": oracle}
"""Every planner :func:`baseline` runs: the baselines and the exhaustive oracle."""


def _space(
    workflow: Workflow,
    model: Model,
    slo: float | str,
    arches: tuple[str, ...] | None,
    memory_grid: tuple[int, ...] | None = None,
    profiled_floor: bool = True,
    default_arches: bool = True,
) -> Space:
    """The space to plan in. ``arches`` not given: every profiled architecture (with
    ``default_arches``) or :class:`Space`'s default."""
    space = Space(
        workflow,
        model,
        arches=arches or (profiled_arches(model, workflow) if default_arches else None),
        memory_grid=tuple(memory_grid) if memory_grid else MEMORY_GRID,
        profiled_floor=profiled_floor,
    )
    ref = space.score(user_max(space)).p95_s if is_relative(slo) else None
    return space.with_slo(parse_slo(slo, ref))


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
    """Every stage alone, each at its cheapest setting."""
    return State(space, [(s.id,) for s in space.workflow.python_stages]).plan()


LARGE_BUNDLE_LIMIT = 8
"""Bundle sizes tried per mapped unit on large workflows (geometric between 1 and N)."""

LARGE_MEMORY_GRID = (128, 256, 512, 1024, 1769, 3538, 5307, 7076, 10240)
"""Memory sizes searched on large workflows (unless a grid is given): powers of two up to
1 GB, then whole vCPUs (1, 2, 3, 4) and the maximum; half the default grid's sizes."""

PLAN_DRAWS = 256
"""Monte Carlo draws while searching a large workflow's plan; the result is then checked,
and repaired if need be, with the model's own draws."""

PLAN_MARGIN = 0.05
"""With fewer draws the P95 is estimated less precisely (a few %): the search aims this
much under the SLO, so that checking with all draws mostly gives back, not buys, speed
(with 2%, one of three 2,000-stage workflows of ``benchmarks/scale.py`` came back 4%
over the SLO, which the repair's few steps per unit could not close)."""


def search(space: Space, max_rounds: int = 6) -> Plan:
    """Apply :data:`PASSES` from every stage alone until the plan stops changing.

    Beyond :data:`SMALL_UNITS` Python stages the search is made to scale: menus hold
    fewer bundle sizes and memories (none beyond the vCPUs a unit can keep busy), the
    model uses :data:`PLAN_DRAWS` draws, and the passes run once (each already ends with
    the plan right-sized); the plan is then re-scored with the model's own draws and
    repaired where the SLO is missed (:func:`refine`).
    """
    if len(space.workflow.python_stages) <= SMALL_UNITS:
        plan = initial_plan(space)
        for _ in range(max_rounds):
            before = signature(plan)
            for rule in PASSES:
                plan = rule(space, plan)
            if signature(plan) == before:
                break
        return plan
    model = space.model.with_draws(PLAN_DRAWS) if space.model.draws > PLAN_DRAWS else space.model
    work = space.variant(
        model=model,
        memory_grid=LARGE_MEMORY_GRID if space.memory_grid == MEMORY_GRID else space.memory_grid,
        prune_memory=True,
        bundle_limit=min(space.bundle_limit, LARGE_BUNDLE_LIMIT),
        slo_s=space.slo_s * (1 - PLAN_MARGIN) if model is not space.model else space.slo_s,
    )
    plan = initial_plan(work)
    for rule in PASSES:
        plan = rule(work, plan)
    return refine(space, work, plan) if work.model is not space.model else plan


def refine(space: Space, work: Space, plan: Plan, faster: int = 3) -> Plan:
    """Re-score ``plan`` (searched in ``work``) with ``space``'s model; meet the SLO again.

    Each unit keeps its setting and may move to the next ``faster`` settings of its
    menu in ``work`` (and one cheaper), scored with ``space``'s model (the timeout too):
    a few per unit, not whole menus at the full number of draws.
    """
    model, wf = space.model, space.workflow
    blocks, choices, menus = [], [], []
    for unit in plan.units:
        block = tuple(unit.stages)
        coarse = work.menu(block)
        at = coarse.index(unit)
        near = [unit] if at is None else coarse.units[max(0, at - 1) : at + 1 + faster]
        menu = build_menu(model, wf, block, [], [], [], settings=near)
        c = menu.index(unit)
        if c is None:  # dominated now, or beyond the timeout with the model's own draws
            ok = quantile(model.invocation(wf, unit).draws, 0.99) <= LIMIT_MS
            menu, c = menu.with_unit(model, wf, unit) if ok else (menu, 0)
        blocks.append(block)
        choices.append(c)
        menus.append(menu)
    state = State(space, blocks, choices, menus)
    meet(state)
    claw_back(state, exact=False)
    return state.plan(**plan.meta)


class PlanningError(WiseFuseError):
    """No plan can run the workflow within Lambda's limits."""


def _refuse_impossible_stages(space: Space) -> None:
    """Raise when a stage alone, at the largest memory, breaks the timeout margin.

    No plan can hold such a stage: fusion only adds work to its unit and memory beyond the
    largest size does not exist. Name the stage, its P99 and the limit.
    """
    top = max(space.memory_grid)
    for stage in space.workflow.python_stages:
        unit = Unit(id=stage.id, stages=[stage.id], memory_mb=top, arch=space.arches[0])
        p99_ms = float(np.quantile(space.model.invocation(space.workflow, unit).draws, 0.99))
        if p99_ms > LIMIT_MS:
            raise PlanningError(
                f"stage {stage.id!r} of {space.workflow.name!r} is predicted to take {p99_ms / 1000:.0f} s "
                f"(P99) per invocation even at {top} MB: more than {LIMIT_MS / 1000:.0f} s, 80% of "
                f"Lambda's {MAX_TIMEOUT_S:.0f} s timeout",
                hint="split the task into smaller ones, or leave it out of the plan (keep it in its framework)",
            )


def optimize(
    workflow: Workflow,
    model: Model,
    slo: float | str,
    *,
    objective: str = "cost",
    arches: tuple[str, ...] | None = None,
    memory_grid: tuple[int, ...] | None = None,
    headroom: float = 0.0,
) -> Planned:
    """The cheapest plan whose predicted P95 meets ``slo`` (seconds, or ``"1.5x"`` of User-Max).

    ``objective="latency"`` returns the fastest plan instead. When no plan meets the SLO,
    the result says so (``meets_slo=False``) and holds the fastest plan found.
    ``memory_grid`` restricts the memory sizes searched (default :data:`MEMORY_GRID`); no
    unit goes below the smallest memory its stages were profiled at (the model would be
    extrapolating where memory pressure, not only the CPU share, sets the time).
    ``headroom`` plans for a P95 that much under the SLO (0.1: 10% under), for the
    model's own error (:data:`SLO_HEADROOM`); the result still names the SLO asked for,
    and ``meets_slo`` says whether the prediction is within it (when no plan is within
    the headroom, the fastest is returned, as without one).
    """
    if not 0.0 <= headroom < 1.0:
        raise ValueError(f"headroom must be in [0, 1), got {headroom!r}")
    if headroom:
        asked = _space(workflow, model, slo, arches, memory_grid).slo_s
        found = optimize(
            workflow, model, asked * (1 - headroom), objective=objective, arches=arches,
            memory_grid=memory_grid,
        )  # fmt: skip
        meta = {**found.plan.meta, "slo_s": asked, "headroom": headroom}
        plan = found.plan.model_copy(update={"meta": meta})
        meets = found.prediction.p95_s <= asked  # within the SLO, if not the headroom
        return Planned(found.planner, plan, found.prediction, asked, meets)
    space = _space(workflow, model, slo, arches, memory_grid)
    _refuse_impossible_stages(space)
    if objective == "latency":  # the fastest plan: the least cost among those with P95 <= 0
        plan = search(space.with_slo(0.0))
        return _finish(space, "wisefuse", plan)
    if objective != "cost":
        raise ValueError(f"objective must be 'cost' or 'latency', got {objective!r}")
    plan = search(space)
    result = _finish(space, "wisefuse", plan)
    if not result.meets_slo:
        fastest = optimize(
            workflow, model, slo, objective="latency", arches=arches, memory_grid=memory_grid
        )
        if fastest.meets_slo:  # the cost search missed a plan that exists: take it
            return Planned("wisefuse", fastest.plan, fastest.prediction, space.slo_s, True)
        log.warning(
            "no plan meets the SLO of %.3f s; the fastest found has P95 %.3f s",
            space.slo_s,
            fastest.prediction.p95_s,
        )
        best = fastest if fastest.prediction.p95_s < result.prediction.p95_s else result
        return Planned("wisefuse", best.plan, best.prediction, space.slo_s, False)
    return result


def baseline(
    workflow: Workflow,
    model: Model,
    name: str,
    slo: float | str = math.inf,
    *,
    arches=None,
    memory_grid: tuple[int, ...] | None = None,
) -> Planned:
    """Plan with one of :data:`PLANNERS` (for baselines ``slo`` only decides ``meets_slo``;
    ``"oracle"`` searches every plan on the grid for the cheapest that meets it)."""
    # the baselines keep their own definitions (User-Min: the smallest memory that runs
    # every function; x86_64 unless asked, or unprofiled: Space's default); the oracle
    # searches what the optimizer searches
    space = _space(
        workflow,
        model,
        slo,
        arches,
        memory_grid,
        profiled_floor=name == "oracle",
        default_arches=False,
    )
    try:
        planner = PLANNERS[name]
    except KeyError:
        raise ValueError(f"unknown planner {name!r}; choose from {sorted(PLANNERS)}") from None
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
