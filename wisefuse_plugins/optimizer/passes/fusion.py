"""Fusion: merge two units joined by an edge when the merged plan scores better.

A merge is allowed when the result is still a valid plan (``plan_problems``: connected,
no cycle between units, mapped stages linked one-to-one). Merging an unmapped producer
with the mapped stage it scatters to makes one invocation that runs every instance (as
Faastlane does); merging mapped stages one-to-one keeps bundling possible. Each round
takes the best merge; the merged unit gets the better of its parts' settings and a
memory sweep, so a merge is judged at its best, not at an arbitrary size.
"""

from __future__ import annotations

from wisefuse_plugins.optimizer.plan import Plan, Unit, plan_problems
from wisefuse_plugins.optimizer.space import Space, unit_id


def _merged(space: Space, plan: Plan, a: Unit, b: Unit) -> list[Plan]:
    stages = [s for s in space.workflow.topological_order() if s in set(a.stages) | set(b.stages)]
    taken = {u.id for u in plan.units if u is not a and u is not b}
    base = Unit(
        id=unit_id(stages, taken),
        stages=stages,
        memory_mb=max(a.memory_mb, b.memory_mb),
        arch=a.arch,
    )
    others = [u for u in plan.units if u is not a and u is not b]
    probe = space.plan([*others, base])
    if plan_problems(probe, space.workflow):
        return []
    sizes = {1}
    if space.bundled(base):
        sizes |= {a.bundle_size, b.bundle_size}
    out = []
    for bsize in sorted(sizes):
        for arch in space.arches:
            for m in space.memories(stages):
                unit = base.model_copy(update={"bundle_size": bsize, "memory_mb": m, "arch": arch})
                out.append(space.plan([*others, unit], **plan.meta))
    return out


def fuse(space: Space, plan: Plan) -> Plan:
    """Greedy: apply the best improving merge until none improves the score."""
    while True:
        owner = {s: u for u in plan.units for s in u.stages}
        pairs = {
            (id(owner[e.src]), id(owner[e.dst])): (owner[e.src], owner[e.dst])
            for e in space.workflow.edges
            if e.src in owner and e.dst in owner and owner[e.src] is not owner[e.dst]
        }
        best = plan
        for a, b in pairs.values():
            for cand in _merged(space, plan, a, b):
                if space.better(cand, best):
                    best = cand
        if best is plan:
            return plan
        plan = best
