"""Measure plans by running them: latency percentiles and cost per run, as Lambda would bill.

Two end-to-end latencies per run:

- ``wall_s``: what the executor saw on this machine;
- ``e2e_s``: the Lambda-equivalent latency, rebuilt from each invocation's
  Lambda-equivalent duration along the unit graph (a unit starts when its predecessors
  end, plus the orchestration delay; it ends with its slowest invocation). A laptop has
  two cores where Lambda has one machine per invocation, so concurrent invocations
  queue here; this figure removes that queueing and is the one to compare with the
  model and with the SLO.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wisefuse_plugins.ir import Workflow
from wisefuse_plugins.plan.schema import Plan, unit_graph
from wisefuse_plugins.runtime import store as st
from wisefuse_plugins.runtime.executor import Call, Invoker, execute


def equivalent_e2e_s(
    workflow: Workflow, plan: Plan, calls: list[Call], orchestration_s: float = 0.0
) -> float:
    """Lambda-equivalent end-to-end latency of one run from its invocation records."""
    import networkx as nx

    graph = unit_graph(plan, workflow)
    per_unit: dict[str, float] = defaultdict(float)
    attempts: dict[tuple[str, tuple[int, ...] | None], float] = defaultdict(float)
    for c in calls:  # retries of one invocation run one after the other
        key = (c.unit, tuple(c.instances) if c.instances is not None else None)
        attempts[key] += (c.invoked.duration_ms + c.invoked.init_ms) / 1000
    for (unit, _), seconds in attempts.items():
        per_unit[unit] = max(per_unit[unit], seconds)
    end: dict[str, float] = {}
    for node in nx.topological_sort(graph):
        start = max((end[p] for p in graph.predecessors(node)), default=0.0)
        end[node] = start + orchestration_s + per_unit.get(node, 0.0)
    return max(end.values(), default=0.0)


WARM_WORKERS = 48
"""The local Lambda's ``concurrency_limit`` when measuring plans: workers alive at once,
enough to keep every unit of a plan warm between runs. At the backend's default (4 on 2
cores) a plan of more functions evicts its own warm workers and every measured run pays
cold starts that Lambda's warm pool would not (the toy's User-Max: 1.06 s a run against
0.008 s; the demo's User-Min at 16: P95 16.0 s against 8.0 s). An idle worker holds about
31 MB (``runtime/backends/local.py``), 48 of them 1.5 GB."""


def concurrency_for(plan: Plan, cores: float) -> int:
    """Invocations in flight such that their CPU shares fit in ``cores``.

    Under the cgroup clock an invocation's Lambda-equivalent duration is its wall time
    under its CPU quota; when the quotas in flight add up to more than the cores free
    they slow each other down, which Lambda (one machine per environment) would not.
    A share is capped at the host's cores (as the backend caps it). At most 16 (the
    executor's default), at least 1.
    """
    from wisefuse_plugins.plan.limits import vcpus

    widest = max(min(vcpus(u.memory_mb), cores) for u in plan.units)
    return max(1, min(16, math.floor(cores / widest + 1e-9)))


@dataclass
class Measured:
    """Figures of ``runs`` executions of one plan."""

    runs: int
    e2e_s: list[float] = field(default_factory=list)
    wall_s: list[float] = field(default_factory=list)
    cost_usd: list[float] = field(default_factory=list)
    cold_starts: int = 0
    outputs: dict[str, Any] | None = None
    #: unit id -> Lambda-equivalent durations (ms, no INIT) of its invocations in the
    #: recorded runs: what :mod:`wisefuse_plugins.model.correct` compares with the model
    unit_ms: dict[str, list[float]] = field(default_factory=dict)

    def p(self, q: float, wall: bool = False) -> float:
        data = self.wall_s if wall else self.e2e_s
        return float(np.percentile(data, q)) if data else float("nan")

    @property
    def p95_s(self) -> float:
        return self.p(95)

    @property
    def p50_s(self) -> float:
        return self.p(50)

    @property
    def mean_cost_usd(self) -> float:
        return float(np.mean(self.cost_usd)) if self.cost_usd else float("nan")


def measure(
    workflow: Workflow,
    plan: Plan,
    invoker: Invoker,
    store: st.Store,
    *,
    workdir: Path,
    runs: int = 5,
    warmup: int = 1,
    orchestration_s: float = 0.0,
    max_concurrency: int = 16,
    keep_outputs: bool = True,
    clean: bool = True,
    by_value: int = 0,
) -> Measured:
    """Execute ``plan`` ``warmup + runs`` times; record the last ``runs``.

    The warm-up run pays the cold starts (kept apart, as a steady pipeline would); each
    recorded run's cost is the sum of its invocations' Lambda bills. The store's run
    folders are removed afterwards unless ``clean`` is False. ``by_value``: values up to
    this many bytes pass by value (:func:`~wisefuse_plugins.runtime.executor.execute`),
    as the platform the plan was made for passes them (``Platform.by_value_bytes``).
    """
    result = Measured(runs=runs)
    for i in range(warmup + runs):
        run = execute(
            workflow,
            plan,
            invoker,
            store,
            workdir=workdir,
            max_concurrency=max_concurrency,
            orchestration_s=orchestration_s,
            deploy=True,
            fetch_outputs=keep_outputs and i == warmup + runs - 1,
            by_value=by_value,
        )
        if i >= warmup:
            result.e2e_s.append(equivalent_e2e_s(workflow, plan, run.calls, orchestration_s))
            result.wall_s.append(run.e2e_s)
            result.cost_usd.append(run.cost_usd)
            result.cold_starts += sum(1 for c in run.calls if c.invoked.cold)
            for c in run.calls:
                result.unit_ms.setdefault(c.unit, []).append(c.invoked.duration_ms)
        if run.outputs:
            result.outputs = run.outputs
        if clean:
            store.delete_prefix(f"runs/{run.run_id}")
    return result
