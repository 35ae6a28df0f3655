"""Draws of one invocation of a unit, and of all the invocations one run makes of it.

An invocation at memory ``m`` takes: its shared reads (:func:`.traffic.shared_reads`),
the runtime's overhead, and its jobs, each instance's chain of fused stages with its
own transfers, run together on ``vCPU(m)`` cores (:func:`.compose.bundle_makespan`);
all that times the unit's correction (:meth:`.ModelState.correction`), plus a cold start with the
platform's probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wisefuse_plugins.ir import Workflow
from wisefuse_plugins.model import compose
from wisefuse_plugins.model.parallel import setting_cores
from wisefuse_plugins.model.shape import count, layout
from wisefuse_plugins.model.stage import factors, level_draws, parallel_fraction, parts
from wisefuse_plugins.model.state import ModelState, unit_key
from wisefuse_plugins.model.traffic import job_io, shared_reads
from wisefuse_plugins.plan.limits import bundle_threads, vcpus
from wisefuse_plugins.plan.lower import chunks, expected_instances
from wisefuse_plugins.plan.schema import Unit


@dataclass
class PredictedInvocation:
    """Draws of one invocation's duration, and its store traffic."""

    draws: np.ndarray  # (R,) ms
    gets: float
    puts: float
    cold_ms: float = 0.0  # the mean the cold starts add to ``draws``

    @property
    def warm_ms(self) -> float:
        """Mean duration without cold starts: what warm runs measure."""
        return float(self.draws.mean()) - self.cold_ms

    @property
    def mean_ms(self) -> float:
        return float(self.draws.mean())


def invocations(
    m: ModelState, workflow: Workflow, unit: Unit
) -> list[tuple[int, PredictedInvocation]]:
    """The invocations of ``unit`` in one run, as (how many, draws of one) pairs.

    Alike instances: the full bundles, and the last one with the instances left over.
    Skewed instances (:func:`skewed`): each invocation with its own instances.
    """
    key = (*unit_key(workflow, unit), "all")
    cached = m.cache.invocations.get(key)
    if cached is not None:
        return cached
    if not layout(m, workflow, tuple(unit.stages))[1]:
        found = [(1, one_invocation(m, workflow, unit, None, 0))]
    else:
        batches = chunks(expected_instances(workflow, unit), unit.bundle_size)
        if skewed(m, workflow, unit):
            found = [(1, one_invocation(m, workflow, unit, len(c), c[0])) for c in batches]
        elif len(batches) > 1 and len(batches[-1]) < len(batches[0]):
            found = [
                (len(batches) - 1, one_invocation(m, workflow, unit, None, None)),
                (1, one_invocation(m, workflow, unit, len(batches[-1]), None)),
            ]
        else:
            found = [(len(batches), one_invocation(m, workflow, unit, None, None))]
    m.cache.invocations[key] = found
    return found


def slowest(m: ModelState, workflow: Workflow, unit: Unit) -> PredictedInvocation:
    """Draws of the unit's slowest invocation (by mean): what its timeout must allow."""
    key = (*unit_key(workflow, unit), "slowest")
    found = m.cache.invocations.get(key)
    if found is None:
        kinds = invocations(m, workflow, unit)
        found = (
            kinds[0][1] if len(kinds) == 1 else max((i for _, i in kinds), key=lambda i: i.mean_ms)
        )
        m.cache.invocations[key] = found
    return found


def skewed(m: ModelState, workflow: Workflow, unit: Unit) -> bool:
    """Whether ``unit``'s invocations are told apart by their instances' skew: a
    bundled unit with a skewed stage (:func:`.stage.factors`), all of whose invocations
    run at once."""
    key = (id(workflow), tuple(unit.stages), unit.bundle_size, "skewed")
    found = m.cache.io.get(key)
    if found is None:
        order, bundled = layout(m, workflow, tuple(unit.stages))
        found = m.cache.io[key] = (
            bundled
            and count(m, workflow, unit) <= m.platform.max_concurrency
            and any(factors(m, workflow, s) is not None for s in order)
        )
    return bool(found)


def one_invocation(
    m: ModelState, workflow: Workflow, unit: Unit, width: int | None, first: int | None
) -> PredictedInvocation:
    """Draws of one invocation of ``unit``: a full bundle, or ``width`` instances;
    ``first``: which instances (:func:`jobs`)."""
    m.cache.remember(workflow)
    key = (*unit_key(workflow, unit), width, first)
    cached = m.cache.invocations.get(key)
    if cached is not None:
        return cached
    order, bundled = layout(m, workflow, tuple(unit.stages))
    members = set(order)
    v = vcpus(unit.memory_mb)
    pool = bundle_threads(unit.memory_mb)
    shared_ms, shared_cpu, gets = shared_reads(m, workflow, order, members)
    p = m.platform
    fixed_cpu = p.invoke_cpu_ms + shared_cpu  # CPU ms at one vCPU
    total = np.full(m.draws, shared_ms + p.invoke_overhead_ms + fixed_cpu / min(v, 1.0))
    puts = 0.0
    if bundled:
        full = min(unit.bundle_size, expected_instances(workflow, unit))
        chains = [(order, full if width is None else width)]
    else:  # stage after stage; a mapped stage inside runs all its instances here
        chains = [([sid], workflow.stage(sid).parallelism) for sid in order]
    for stages, n_jobs in chains:
        draws, job_gets, job_puts = makespan(
            m, workflow, stages, members, unit, n_jobs, v, pool, first
        )
        total += draws
        gets += job_gets * n_jobs
        puts += job_puts * n_jobs
    factor = m.correction(unit, workflow)
    if factor != 1.0:
        total = total * factor
    init = max((m.profiles[s].init_ms for s in unit.stages), default=0.0)
    cold_ms = 0.0
    if init and p.cold_probability > 0:
        cold = init * (m.cold_u < p.cold_probability)
        total = total + cold
        cold_ms = float(cold.mean())
    result = PredictedInvocation(total, gets, puts, cold_ms)
    m.cache.invocations[key] = result
    return result


def makespan(
    m: ModelState,
    workflow: Workflow,
    stages: list[str],
    members: set[str],
    unit: Unit,
    width: int,
    v: float,
    pool: int,
    first: int | None,
) -> tuple[np.ndarray, float, float]:
    """Draws of ``width`` instance chains run together, and GETs/PUTs per chain."""
    exact = min(width, compose.EXACT_LIMIT)
    wait, cpu, threads, gets, puts, phi = jobs(
        m, workflow, stages, members, unit.memory_mb, unit.arch, exact,
        first if width <= compose.EXACT_LIMIT else None,
    )  # fmt: skip
    if width <= compose.EXACT_LIMIT:
        return compose.bundle_makespan(wait, cpu, v, threads, pool, phi), gets, puts
    alone = wait[:, 0] + cpu[:, 0] / min(v, threads)
    longest = compose.max_of(alone, width, m.order_u)
    draws = compose.bundle_makespan_large(
        float(wait.mean()), float(wait.std()), float(cpu.mean()), float(cpu.std()),
        longest, width, v, threads, pool, m.normal_z, phi,
    )  # fmt: skip
    return draws, gets, puts


def jobs(
    m: ModelState,
    workflow: Workflow,
    stages: list[str],
    members: set[str],
    memory: int,
    arch: str,
    width: int,
    first: int | None = None,
) -> tuple[np.ndarray, np.ndarray, int, float, float, float]:
    """(wait, cpu) draws of ``width`` instance chains of ``stages``, with their own I/O,
    and the chain's parallel fraction (its stages', weighted by their mean CPU).

    ``first``: the jobs are instances ``first .. first + width - 1``, drawn with their
    own skew (:func:`.stage.factors`); ``None``: any instances, drawn alike.

    The chain runs with the threads of its most threaded stage, ``T``; the stages run
    one after the other, each on its own threads, so a part of ``t`` threads counts
    ``min(v, T) / min(v, t)`` times its CPU: a chain alone then takes the sum of its
    stages alone (a 0.1 ms stage fitted with two threads must not halve the CPU of a
    single-threaded 300 ms stage fused before it).
    """
    wait = np.zeros((m.draws, width))
    cpu = np.zeros((m.draws, width))
    weighted = total_cpu = 0.0
    io, gets, puts = job_io(m, workflow, tuple(stages), frozenset(members))
    shared = setting_cores(memory, width)
    kinds = [None if first is None else factors(m, workflow, sid) for sid, _ in io]
    stage_parts = [
        parts(m, sid, memory, arch, noise=f is not None)
        for (sid, _), f in zip(io, kinds, strict=True)
    ]
    threads = max((t for _, _, t in stage_parts), default=1)
    v = vcpus(memory)
    rate = min(v, threads)  # what the chain's CPU is divided by (compose)
    one = rate / min(v, 1.0)  # for a part on one thread
    for (sid, transfers), skew, (w, c, t) in zip(io, kinds, stage_parts, strict=True):
        if t != threads:
            c = c * (rate / min(v, t))
        levels = level_draws(m, sid, width, first or 0)
        if skew is not None:
            scale = skew[first : first + width][None, :]
            wait += w[levels] * scale
            cpu += c[levels] * scale
        else:
            wait += w[levels]
            cpu += c[levels]
        mean_cpu = m.cache.cpu_means[sid, memory, arch, skew is not None]
        weighted += mean_cpu * parallel_fraction(m, sid, shared)
        total_cpu += mean_cpu
        for ms, cpu_ms in transfers:  # requests: one thread
            wait += ms
            cpu += cpu_ms * one if one != 1.0 else cpu_ms
    phi = weighted / total_cpu if total_cpu > 0 else 1.0
    return wait, cpu, threads, gets, puts, phi
