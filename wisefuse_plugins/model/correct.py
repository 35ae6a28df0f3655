"""Correct the model with measured runs of a plan: one factor per unit.

The profiles time each stage alone (and mapped stages in small bundles); a plan's units
put stages, instances and their I/O together, and where that composition behaves in a
way no profile showed (instances fighting over memory bandwidth or the interpreter lock,
a large fused working set, a host that emulates more cores than it has) the model is
off for that unit, in the same direction run after run. Measured runs of the plan give
each unit's mean invocation time; over the profiles' prediction it is the unit's
*correction*, which :class:`~wisefuse_plugins.model.predict.Model` applies to the same
stages, bundle size and architecture at the nearest memory measured, and, weighted by
stage, to other units of several stages or instances of the same kind (instances on
several threads or not) holding its stages
(:meth:`~wisefuse_plugins.model.predict.Model.correction`). A stage alone keeps its
profile: the profiles measured exactly that.

Examples
--------
>>> merge({(("a",), 1, "x86_64"): {512: 1.2}}, {(("a",), 1, "x86_64"): {1024: 0.9}})
{(('a',), 1, 'x86_64'): {512: 1.2, 1024: 0.9}}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from wisefuse_plugins.ir import Workflow
from wisefuse_plugins.model.predict import Corrections, Model
from wisefuse_plugins.plan.schema import Plan

MIN_INVOCATIONS = 3
"""Measured invocations a unit needs before its mean is trusted for a factor."""


def unit_corrections(
    model: Model,
    workflow: Workflow,
    plan: Plan,
    unit_ms: Mapping[str, Sequence[float]],
    *,
    min_invocations: int = MIN_INVOCATIONS,
) -> Corrections:
    """Measured over predicted mean invocation time of every unit of ``plan``.

    Parameters
    ----------
    model
        The model; its own corrections are left out (a factor is always relative to
        the profiles' prediction, so factors from several plans do not compound).
    unit_ms
        ``unit id -> durations (ms)`` of the unit's warm invocations (no INIT), as
        :class:`wisefuse_plugins.runtime.measure.Measured` records them.

    Returns
    -------
    ``(stages, bundle size, arch) -> {memory MB: factor}`` for the units measured at
    least ``min_invocations`` times.
    """
    base = model.corrected({}) if model.corrections else model
    found: Corrections = {}
    for unit in plan.units:
        seen = unit_ms.get(unit.id) or ()
        if len(seen) < min_invocations:
            continue
        kinds = base.invocations(workflow, unit)
        count = sum(n for n, _ in kinds)
        predicted = sum(n * inv.warm_ms for n, inv in kinds) / count
        if predicted <= 0:
            continue
        key = (tuple(unit.stages), unit.bundle_size, unit.arch)
        found.setdefault(key, {})[unit.memory_mb] = float(np.mean(seen)) / predicted
    return found


def merge(old: Corrections, new: Corrections) -> Corrections:
    """``old`` with ``new``'s factors added (a unit measured again keeps the newer one)."""
    out = {key: dict(by_memory) for key, by_memory in old.items()}
    for key, by_memory in new.items():
        out.setdefault(key, {}).update(by_memory)
    return out


def changed(old: Corrections, new: Corrections) -> Corrections:
    """``new``'s factors that ``old`` does not already hold (what a merge added or changed)."""
    out: Corrections = {}
    for key, by_memory in new.items():
        kept = old.get(key, {})
        diff = {m: f for m, f in by_memory.items() if kept.get(m) != f}
        if diff:
            out[key] = diff
    return out
