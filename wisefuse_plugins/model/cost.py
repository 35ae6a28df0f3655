"""Expected cost of a unit's invocations in one run: compute as Lambda bills it (per
1 ms, INIT included), requests, store requests, and orchestration steps."""

from __future__ import annotations

import math

import numpy as np

from wisefuse_plugins.ir import Workflow
from wisefuse_plugins.model.invocation import invocations
from wisefuse_plugins.model.shape import count
from wisefuse_plugins.model.state import ModelState, unit_key
from wisefuse_plugins.plan.pricing import lambda_cost
from wisefuse_plugins.plan.schema import Unit


def unit_cost(m: ModelState, workflow: Workflow, unit: Unit) -> float:
    """Expected cost of one run's invocations of ``unit`` (compute, requests, store); the
    last of a bundled unit's invocations bills only the instances left for it."""
    key = unit_key(workflow, unit)
    cached = m.cache.costs.get(key)
    if cached is not None:
        return cached
    n_invocations = count(m, workflow, unit)
    init = max((m.profiles[s].init_ms for s in unit.stages), default=0.0)
    cold_ms = m.platform.cold_probability * math.ceil(init)
    cost = 0.0
    for n, inv in invocations(m, workflow, unit):
        billed = float(np.ceil(inv.draws).mean()) + cold_ms
        cost += n * lambda_cost(billed, unit.memory_mb, unit.arch, m.pricing)
        if m.platform.bill_store_requests:
            cost += n * (inv.puts * m.pricing.s3_put + inv.gets * m.pricing.s3_get)
    cost += m.platform.orchestration_usd_per_step * (1 + n_invocations)
    m.cache.costs[key] = cost
    return cost
