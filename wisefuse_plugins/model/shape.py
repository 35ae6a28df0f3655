"""A unit's shape: its stages in order, whether it is bundled, how many invocations it
makes, and which mapped stages run instances at once on several threads (where the
model is least sure: :func:`contended`)."""

from __future__ import annotations

from collections.abc import Sequence

from wisefuse_plugins.ir import Workflow
from wisefuse_plugins.model.parallel import setting_cores
from wisefuse_plugins.model.stage import checked_profile, fights, parallel_fraction
from wisefuse_plugins.model.state import ModelState
from wisefuse_plugins.plan.limits import bundle_threads
from wisefuse_plugins.plan.lower import invocation_count
from wisefuse_plugins.plan.schema import Unit


def rank(m: ModelState, workflow: Workflow) -> dict[str, int]:
    """Position of each stage in the workflow's topological order (sorted once)."""
    found = m.cache.ranks.get(id(workflow))
    if found is None:
        m.cache.remember(workflow)
        found = {s: i for i, s in enumerate(workflow.topological_order())}
        m.cache.ranks[id(workflow)] = found
    return found


def layout(m: ModelState, workflow: Workflow, stages: tuple[str, ...]) -> tuple[list[str], bool]:
    """A unit's stages in topological order and whether it is bundled (profiles checked)."""
    key = (id(workflow), stages, "layout")
    cached = m.cache.io.get(key)
    if cached is None:
        for sid in stages:
            checked_profile(m, workflow, sid)
        order = sorted(set(stages), key=rank(m, workflow).__getitem__)
        bundled = all(workflow.stage(s).mapped for s in stages)
        cached = m.cache.io[key] = (order, bundled)
    return cached


def count(m: ModelState, workflow: Workflow, unit: Unit) -> int:
    """Invocations one run makes of ``unit``, counted by the lowering from the sizes the
    IR expects (:func:`~wisefuse_plugins.plan.lower.invocation_count`); the cached
    layout first checks that every stage has a profile."""
    if not layout(m, workflow, tuple(unit.stages))[1]:
        return 1
    return invocation_count(workflow, unit)


def together(
    m: ModelState, workflow: Workflow, stages: Sequence[str], bundle_size: int, memory_mb: int
) -> list[tuple[str, int]]:
    """The unit's mapped stages whose instances run at once on two threads or more,
    with how many run together."""
    if bundle_threads(memory_mb) < 2:
        return []
    order, bundled = layout(m, workflow, tuple(stages))
    found = []
    for sid in order:
        stage = workflow.stage(sid)
        n = min(bundle_size, stage.parallelism) if bundled else stage.parallelism
        if stage.mapped and n >= 2:
            found.append((sid, n))
    return found


def threaded(
    m: ModelState, workflow: Workflow, stages: Sequence[str], bundle_size: int, memory_mb: int
) -> bool:
    """Whether a unit runs instances of a mapped stage at once on two threads or more."""
    return bool(together(m, workflow, stages, bundle_size, memory_mb))


def contended(m: ModelState, workflow: Workflow, unit: Unit) -> bool:
    """Whether ``unit`` runs instances of a stage that fights over the interpreter
    lock (parallel fraction < 0) at once on two threads or more.

    Such instances measured far from any prediction, both ways and from run to run
    (video's bundles of 2 at 2048 MB measured 84% over the prediction in one run; its
    whole DAG at 10,240 MB 11% under it in one run and 60% over in the next): the
    planner leaves these units out. On one thread the instances run one after the
    other, as predicted.
    """
    if not any(fights(m, sid) for sid in unit.stages):
        return False
    return any(
        parallel_fraction(m, sid, setting_cores(unit.memory_mb, n)) < 0
        for sid, n in together(m, workflow, unit.stages, unit.bundle_size, unit.memory_mb)
    )
