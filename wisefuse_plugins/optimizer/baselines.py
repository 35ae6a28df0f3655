"""The planners WiseFuse is compared with, behind the same interface ``(space) -> Plan``.

- ``user-min``: every function alone, all at the smallest memory that runs every one.
- ``user-max``: every function alone at 10,240 MB.
- ``power-tuning``: every function alone, each at the memory AWS Lambda Power Tuning's
  *balanced* strategy picks (the lowest 0.5 * cost/max cost + 0.5 * time/max time).
- ``sonic``: SONIC's per-edge data passing: fuse a one-to-one edge when passing its data
  in memory beats the store (locality), no bundling; power-tuned memory.
- ``photons``: every instance of a mapped stage in one invocation (bundle = N), no fusion;
  memory grows with the bundle (N x the power-tuned size, at most 10,240 MB).
- ``faastlane``: each connected group of Python stages fused into one unit (threads run a
  mapped stage's instances), at 10,240 MB.
"""

from __future__ import annotations

from collections.abc import Callable

import networkx as nx
import numpy as np

from wisefuse_plugins.ir import EdgePattern
from wisefuse_plugins.optimizer.space import Space, unit_id
from wisefuse_plugins.plan.limits import MAX_MEMORY_MB
from wisefuse_plugins.plan.schema import Plan, Unit, plan_problems

Planner = Callable[[Space], Plan]


def _alone(space: Space, memory: Callable[[str], int]) -> Plan:
    return space.plan(
        [Unit(id=s.id, stages=[s.id], memory_mb=memory(s.id)) for s in space.workflow.python_stages]
    )


def user_min(space: Space) -> Plan:
    floor = max(space.min_memory([s.id]) for s in space.workflow.python_stages)
    return _alone(space, lambda _: floor)


def user_max(space: Space) -> Plan:
    return _alone(space, lambda _: MAX_MEMORY_MB)


def balanced_memory(space: Space, stage: str) -> int:
    """AWS Lambda Power Tuning's balanced choice for one function alone."""
    sizes = space.memories([stage])
    unit = Unit(id=stage, stages=[stage])
    times, costs = [], []
    for m in sizes:
        u = unit.model_copy(update={"memory_mb": m})
        times.append(float(np.mean(space.model.invocation(space.workflow, u).draws)))
        costs.append(space.model.unit_cost(space.workflow, u))
    t, c = np.array(times), np.array(costs)
    score = 0.5 * c / c.max() + 0.5 * t / t.max()
    return sizes[int(np.argmin(score))]


def power_tuning(space: Space) -> Plan:
    return _alone(space, lambda s: balanced_memory(space, s))


def sonic(space: Space) -> Plan:
    """Fuse one-to-one edges where in-memory passing is faster than the store."""
    wf = space.workflow
    groups = nx.Graph()
    groups.add_nodes_from(s.id for s in wf.python_stages)
    for e in wf.edges:
        if e.pattern != EdgePattern.ONE_TO_ONE or e.kind != "data":
            continue
        if not (wf.stage(e.src).is_python and wf.stage(e.dst).is_python):
            continue
        if wf.stage(e.src).mapped != wf.stage(e.dst).mapped:
            continue
        if space.model.platform.transfer_ms(space.model.profiles[e.src].output_bytes) > 0:
            groups.add_edge(e.src, e.dst)
    units = []
    order = wf.topological_order()
    taken: set[str] = set()
    for comp in nx.connected_components(groups):
        stages = [s for s in order if s in comp]
        mem = max(balanced_memory(space, s) for s in stages)
        uid = unit_id(stages, taken)
        taken.add(uid)
        units.append(Unit(id=uid, stages=stages, memory_mb=mem))
    plan = space.plan(units)
    return plan if not plan_problems(plan, wf) else power_tuning(space)


def photons(space: Space) -> Plan:
    units = []
    for s in space.workflow.python_stages:
        mem = balanced_memory(space, s.id)
        if s.mapped:
            units.append(
                Unit(
                    id=s.id,
                    stages=[s.id],
                    bundle_size=s.parallelism,
                    memory_mb=min(MAX_MEMORY_MB, mem * s.parallelism),
                )
            )
        else:
            units.append(Unit(id=s.id, stages=[s.id], memory_mb=mem))
    return space.plan(units)


def faastlane(space: Space) -> Plan:
    wf = space.workflow
    python = {s.id for s in wf.python_stages}
    g = wf.graph.subgraph(python).to_undirected()
    order = wf.topological_order()
    units, taken = [], set()
    for comp in nx.connected_components(g):
        stages = [s for s in order if s in comp]
        uid = unit_id(stages, taken)
        taken.add(uid)
        units.append(Unit(id=uid, stages=stages, memory_mb=MAX_MEMORY_MB))
    plan = space.plan(units)
    # an opaque stage between two parts of a component would make units depend in a cycle
    return plan if not plan_problems(plan, wf) else user_max(space)


BASELINES: dict[str, Planner] = {
    "user-min": user_min,
    "user-max": user_max,
    "power-tuning": power_tuning,
    "sonic": sonic,
    "photons": photons,
    "faastlane": faastlane,
}
