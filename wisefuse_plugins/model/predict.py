"""Predict a plan's end-to-end latency distribution and cost per run.

For each unit the model draws the duration of one invocation (Monte Carlo over the
stages' fitted distributions), composes its invocations (max of ``ceil(N / b)`` bundles),
and walks the unit graph (a node starts when all its predecessors are done, after the
orchestration delay). Common random numbers (fixed seed per stage) make the comparison of
two plans a comparison of plans, not of noise.

What one invocation of unit ``u`` at memory ``m`` costs in time:

- inputs from outside ``u``: a store GET each (its latency, and the CPU a request and
  its bytes take, at the unit's share: :meth:`Platform.request_ms`); an input the whole
  bundle shares (broadcast, gather) is read once per invocation, before the jobs
  (:mod:`.traffic`);
- the jobs: each instance's chain of fused stages (wait + CPU parts, summed), run by
  ``ceil(vCPU)`` threads on ``vCPU(m)`` cores (:func:`compose.bundle_makespan`), as
  much in parallel as the stages' parallel fraction lets them (:mod:`.parallel`);
- exported outputs: a store PUT each (and one per element when scattered); where the
  orchestrator passes small values itself (:attr:`Platform.by_value_bytes`), those move
  by value with no request, and their readers take them from the event;
- the runtime's own overhead (a fixed part and CPU at the unit's share), and a cold start
  with the platform's probability;
- all but the cold start times the unit's correction, when measured runs of a plan gave
  one (:mod:`.correct`, :mod:`.correction`; none by default).

Fusion shows up as the GETs, PUTs, orchestration steps and cold starts a fused edge no
longer has; bundling as fewer invocations sharing cores and shared reads.

Where each part lives: one stage's law and draws :mod:`.stage`; a unit's transfers
:mod:`.traffic`, its shape :mod:`.shape`, one invocation :mod:`.invocation`, its cost
:mod:`.cost`; this module walks the unit graph, and :class:`Model` holds the profiles,
constants and caches (:mod:`.state`) with those functions as methods.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from wisefuse_plugins.ir import Workflow
from wisefuse_plugins.model import compose, correction, cost, invocation, shape, stage
from wisefuse_plugins.model.invocation import PredictedInvocation
from wisefuse_plugins.model.scaling import Fit
from wisefuse_plugins.model.state import Corrections, ModelError, ModelState, unit_key
from wisefuse_plugins.plan.schema import Plan, Unit, unit_graph

__all__ = [
    "Corrections",
    "Model",
    "ModelError",
    "PredictedInvocation",
    "Prediction",
    "UnitPrediction",
    "predict",
    "unit_duration",
]


@dataclass
class UnitPrediction:
    unit: str
    invocations: int
    memory_mb: int
    arch: str
    bundle_size: int
    p50_ms: float
    p95_ms: float
    mean_invocation_ms: float
    p99_invocation_ms: float
    cost_usd: float
    gets: float
    puts: float


@dataclass
class Prediction:
    p50_s: float
    p95_s: float
    p99_s: float
    cost_usd: float
    units: list[UnitPrediction] = field(default_factory=list)
    samples_s: np.ndarray | None = None


def unit_duration(m: ModelState, workflow: Workflow, unit: Unit) -> tuple[np.ndarray, int]:
    """Draws of the time from a unit's start to its last invocation's end, and the count.

    Cached (the planner asks for the same unit many times); the array is shared: do not
    modify it.
    """
    key = unit_key(workflow, unit)
    cached = m.cache.durations.get(key)
    if cached is not None:
        return cached
    count = shape.count(m, workflow, unit)
    if invocation.skewed(m, workflow, unit):  # each invocation with its own instances
        kinds = invocation.invocations(m, workflow, unit)
        dur = np.max(np.vstack([inv.draws for _, inv in kinds]), axis=0)
    else:
        inv = invocation.slowest(m, workflow, unit)
        waves = math.ceil(count / m.platform.max_concurrency)
        in_flight = min(count, m.platform.max_concurrency)
        dur = compose.max_of(inv.draws, in_flight, m.order_u)
        if waves > 1:
            dur = dur + (waves - 1) * float(inv.draws.mean())
    m.cache.durations[key] = (dur, count)
    return dur, count


def predict(m: ModelState, workflow: Workflow, plan: Plan) -> Prediction:
    """P50/P95/P99 end-to-end latency (s) and expected cost per run (USD) of ``plan``: a
    node of the unit graph starts when all its predecessors are done, after the
    orchestration delay; the run ends with its last node."""
    graph = unit_graph(plan, workflow)
    units = {u.id: u for u in plan.units}
    finish: dict[str, np.ndarray] = {}
    done: list[tuple[str, Unit, np.ndarray, int, float, PredictedInvocation]] = []
    total_cost = 0.0
    orch = m.platform.orchestration_ms
    for node in nx.topological_sort(graph):
        preds = list(graph.predecessors(node))
        start = (
            np.max(np.vstack([finish[p] for p in preds]), axis=0) if preds else np.zeros(m.draws)
        )
        if node in units:
            unit = units[node]
            dur, count = unit_duration(m, workflow, unit)
            ucost = cost.unit_cost(m, workflow, unit)
            done.append((node, unit, dur, count, ucost, invocation.slowest(m, workflow, unit)))
            total_cost += ucost
        else:
            dur = stage.opaque_duration(m, node)
        finish[node] = start + orch + dur
    e2e = np.max(np.vstack(list(finish.values())), axis=0) / 1000 if finish else np.zeros(m.draws)
    q50, q95, q99 = np.quantile(e2e, [0.5, 0.95, 0.99])
    return Prediction(float(q50), float(q95), float(q99), total_cost, _records(done), e2e)


def _records(
    done: list[tuple[str, Unit, np.ndarray, int, float, PredictedInvocation]],
) -> list[UnitPrediction]:
    """Per-unit figures; the quantiles of all units in one call each (a large plan has
    thousands of units, and one ``np.quantile`` call per figure per unit dominated)."""
    if not done:
        return []
    durs = np.vstack([d[2] for d in done])
    invs = np.vstack([d[5].draws for d in done])
    p50 = np.quantile(durs, 0.5, axis=1)
    p95 = np.quantile(durs, 0.95, axis=1)
    p99 = np.quantile(invs, 0.99, axis=1)
    mean = invs.mean(axis=1)
    return [
        UnitPrediction(
            unit=node,
            invocations=count,
            memory_mb=unit.memory_mb,
            arch=unit.arch,
            bundle_size=unit.bundle_size,
            p50_ms=float(p50[k]),
            p95_ms=float(p95[k]),
            mean_invocation_ms=float(mean[k]),
            p99_invocation_ms=float(p99[k]),
            cost_usd=ucost,
            gets=inv.gets * count,
            puts=inv.puts * count,
        )
        for k, (node, unit, _, count, ucost, inv) in enumerate(done)
    ]


class Model(ModelState):
    """A performance and cost model fitted to stage profiles (parameters:
    :class:`~wisefuse_plugins.model.state.ModelState`).

    Each method is one of the model's functions on this model; the planner and the
    runtime's callers ask these questions.
    """

    def with_draws(self, draws: int) -> Model:
        """The same model with another number of Monte Carlo draws, sharing the fitted laws.

        Planning a large workflow scores many candidates; fewer draws make each cheaper
        and the fits (the slow part of building a model) are not redone.
        """
        return self._sibling(draws, self.corrections)

    def corrected(self, corrections: Corrections) -> Model:
        """The same model with these unit corrections (:mod:`.correct`) instead of its own,
        sharing the fitted laws."""
        return self._sibling(self.draws, corrections)

    def _sibling(self, draws: int, corrections: Corrections) -> Model:
        other = Model(
            self.profiles, self.platform, self.pricing, draws=draws, seed=self.seed,
            law=self.law, corrections=corrections,
        )  # fmt: skip
        other.share_fits(self)
        return other

    # -- stages -------------------------------------------------------------------------

    def check(self, workflow: Workflow) -> None:
        """Raise :class:`ModelError` when a Python stage has no current profile."""
        stage.check(self, workflow)

    def arches(self, workflow: Workflow) -> list[str]:
        """Architectures every Python stage has profiles for."""
        return stage.arches(self, workflow)

    def stage_fit(self, sid: str, arch: str, *, noise: bool = False) -> Fit:
        """:func:`.stage.stage_fit`: the memory-scaling law of ``sid``."""
        return stage.stage_fit(self, sid, arch, noise=noise)

    def factors(self, workflow: Workflow, sid: str) -> np.ndarray | None:
        """:func:`.stage.factors`: per-instance factors of ``sid``, if they apply."""
        return stage.factors(self, workflow, sid)

    def parallel_fraction(self, sid: str, cores: float | None = None) -> float:
        """:func:`.stage.parallel_fraction` of ``sid`` (for instances sharing ``cores``)."""
        return stage.parallel_fraction(self, sid, cores)

    def opaque_duration(self, sid: str) -> np.ndarray:
        """Draws (ms) of an opaque stage, which runs in its framework whatever the plan."""
        return stage.opaque_duration(self, sid)

    # -- units --------------------------------------------------------------------------

    def threaded(
        self, workflow: Workflow, stages: Sequence[str], bundle_size: int, memory_mb: int
    ) -> bool:
        """Whether a unit runs instances of a mapped stage at once on two threads or more."""
        return shape.threaded(self, workflow, stages, bundle_size, memory_mb)

    def contended(self, workflow: Workflow, unit: Unit) -> bool:
        """:func:`.shape.contended`: whether ``unit`` runs instances that fight over the
        interpreter lock on two threads or more (the planner leaves such units out)."""
        return shape.contended(self, workflow, unit)

    def correction(self, unit: Unit, workflow: Workflow) -> float:
        """:func:`.correction.correction`: the factor measured runs give ``unit``."""
        return correction.correction(self, unit, workflow)

    def invocations(self, workflow: Workflow, unit: Unit) -> list[tuple[int, PredictedInvocation]]:
        """:func:`.invocation.invocations`: (how many, draws of one) per kind of invocation."""
        return invocation.invocations(self, workflow, unit)

    def invocation(self, workflow: Workflow, unit: Unit) -> PredictedInvocation:
        """Draws of the unit's slowest invocation (by mean): what its timeout must allow."""
        return invocation.slowest(self, workflow, unit)

    def unit_duration(self, workflow: Workflow, unit: Unit) -> tuple[np.ndarray, int]:
        """:func:`unit_duration`: draws of a unit's time in a run, and its invocations."""
        return unit_duration(self, workflow, unit)

    def unit_cost(self, workflow: Workflow, unit: Unit) -> float:
        """:func:`.cost.unit_cost`: expected cost of one run's invocations of ``unit``."""
        return cost.unit_cost(self, workflow, unit)

    # -- the whole plan -----------------------------------------------------------------

    def predict(self, workflow: Workflow, plan: Plan) -> Prediction:
        """P50/P95/P99 end-to-end latency (s) and expected cost per run (USD) of ``plan``."""
        return predict(self, workflow, plan)
