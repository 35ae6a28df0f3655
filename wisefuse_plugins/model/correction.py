"""Which measured correction a unit's invocation time takes.

:mod:`.correct` measures the factors (measured over predicted mean invocation time, per
unit of a plan that ran); a model built with them (``Model(corrections=...)``) applies
them here, to the units it predicts, including units that never ran.
"""

from __future__ import annotations

import math

from wisefuse_plugins.ir import Workflow
from wisefuse_plugins.model.shape import threaded
from wisefuse_plugins.model.stage import stage_duration_ms
from wisefuse_plugins.model.state import ModelState
from wisefuse_plugins.plan.schema import Unit


def correction(m: ModelState, unit: Unit, workflow: Workflow) -> float:
    """The factor measured runs give this unit's invocation time.

    A unit of the same stages, bundle size and architecture was measured: its factor
    at the nearest memory measured. Else a stage alone keeps its profile's prediction
    (the profiles measured exactly that), and a unit of several stages or instances
    takes the factors its stages had in measured units of several stages or
    instances *of the same kind* (:func:`.shape.threaded` or not), weighted by the
    stages' predicted time (1.0 for a stage in none). Threads sharing a few cores are
    where the model is least sure (svd's whole DAG, four threads on two cores, measured
    15-30% over its prediction run after run, while its fused stages on one thread
    measured as predicted): their excess says nothing of units without them.
    """
    if not m.corrections:
        return 1.0
    found = m.corrections.get((tuple(unit.stages), unit.bundle_size, unit.arch))
    if found:
        near = min(found, key=lambda mb: (abs(math.log(mb / unit.memory_mb)), mb))
        return found[near]
    if len(unit.stages) == 1 and unit.bundle_size == 1:
        return 1.0
    kind = threaded(m, workflow, unit.stages, unit.bundle_size, unit.memory_mb)
    by_stage = stage_factors(m, workflow)
    if not any((sid, kind) in by_stage for sid in unit.stages):
        return 1.0
    weighted = total = 0.0
    for sid in unit.stages:  # a stage never measured counts as predicted (1.0)
        w = float(stage_duration_ms(m, sid, unit.memory_mb, unit.arch).mean())
        weighted += w * by_stage.get((sid, kind), 1.0)
        total += w
    return weighted / total if total > 0 else 1.0


def stage_factors(m: ModelState, workflow: Workflow) -> dict[tuple[str, bool], float]:
    """Per stage and kind of unit (:func:`.shape.threaded`), the geometric mean of the
    factors of the measured units of several stages or instances that hold it."""
    key = id(workflow)
    if key not in m.cache.by_stage:
        logs: dict[tuple[str, bool], list[float]] = {}
        for (stages, bundle, _), by_memory in m.corrections.items():
            if len(stages) == 1 and bundle == 1:
                continue  # a stage alone says nothing of how it composes
            for memory, factor in by_memory.items():
                kind = threaded(m, workflow, stages, bundle, memory)
                for sid in stages:
                    logs.setdefault((sid, kind), []).append(math.log(factor))
        m.cache.by_stage[key] = {k: math.exp(sum(v) / len(v)) for k, v in logs.items()}
    return m.cache.by_stage[key]
