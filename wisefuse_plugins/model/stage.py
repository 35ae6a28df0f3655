"""One stage's time: its checked profile, its memory-scaling law, its quantiles split into
wait and CPU, its draws, its instances' skew and how they share cores.

Every function takes the :class:`~wisefuse_plugins.model.state.ModelState` whose profiles
it reads and whose caches it fills.
"""

from __future__ import annotations

import zlib

import numpy as np

from wisefuse_plugins.ir import Workflow
from wisefuse_plugins.model import parallel
from wisefuse_plugins.model.profile import StageProfile
from wisefuse_plugins.model.scaling import LEVELS, Fit, fit, quantiles
from wisefuse_plugins.model.state import ModelError, ModelState
from wisefuse_plugins.plan.limits import vcpus

SKEW_LIMIT = 64
"""Instances up to which a skewed mapped stage's invocations are told apart (each with its
instances' factors, :mod:`.skew`); wider stages draw their instances alike."""

UNPROFILED_PARALLEL_FRACTION = 0.0
"""What the model assumes of a stage never profiled in a bundle on two threads or more:
its instances gain nothing from sharing an invocation's cores (pure Python under the
interpreter lock). Cautious on purpose: a plan is not promised parallel speed-up that
was never measured; ``wisefuse profile --bundle 1,2`` at 3538 MB measures it."""


def checked_profile(m: ModelState, workflow: Workflow, sid: str) -> StageProfile:
    """The profile of ``sid``; :class:`ModelError` when it has none or it is for other code."""
    prof = m.profiles.get(sid)
    stage = workflow.stage(sid)
    if prof is None or not prof.samples:
        raise ModelError(
            f"no profile for stage {sid!r} of workflow {workflow.name!r}",
            hint="run `wisefuse profile` on the workflow first",
        )
    if stage.callable is not None and prof.code_hash != stage.callable.code_hash:
        raise ModelError(
            f"the profile of stage {sid!r} is for another version of its code (code hash differs)",
            hint="re-profile the stage: `wisefuse profile` skips what is current",
        )
    return prof


def check(m: ModelState, workflow: Workflow) -> None:
    """Raise :class:`ModelError` when a Python stage has no current profile."""
    for s in workflow.python_stages:
        checked_profile(m, workflow, s.id)


def arches(m: ModelState, workflow: Workflow) -> list[str]:
    """Architectures every Python stage has profiles for."""
    sets = [checked_profile(m, workflow, s.id).arches() for s in workflow.python_stages]
    common = set.intersection(*sets) if sets else set()
    return sorted(common)


def stage_fit(m: ModelState, sid: str, arch: str, *, noise: bool = False) -> Fit:
    """The memory-scaling law of ``sid``; with ``noise``, of its samples with the
    instances' skew taken out (:mod:`.skew`)."""
    key = (sid, arch, noise)
    if key not in m.cache.fits:
        by_memory = m.profiles[sid].by_memory(arch, noise=noise)
        if not by_memory:
            raise ModelError(
                f"stage {sid!r} has no {arch} profile",
                hint=f"profile it on {arch} or plan for another arch",
            )
        m.cache.fits[key] = fit(by_memory, law=m.law)  # type: ignore[arg-type]
    return m.cache.fits[key]


def parts(
    m: ModelState, sid: str, memory_mb: int, arch: str, *, noise: bool = False
) -> tuple[np.ndarray, np.ndarray, int]:
    """(wait, cpu, threads) per quantile level of ``sid`` at ``memory_mb`` (with
    ``noise``: of a typical instance, to be scaled by an instance's factor).

    At a profiled size the measured quantiles are kept exactly (the fit only splits
    them into parts); elsewhere the fitted law gives them.
    """
    key = (sid, memory_mb, arch, noise)
    cached = m.cache.parts.get(key)
    if cached is not None:
        return cached
    f = stage_fit(m, sid, arch, noise=noise)
    wait, cpu = f.split(memory_mb)
    prof = m.profiles[sid]
    source = prof.noise if noise and prof.noise is not None else prof.samples
    measured = source.get((arch, memory_mb))
    if measured is not None and len(measured):
        target = quantiles(measured)
        total = wait + cpu / min(vcpus(memory_mb), f.threads)
        scale = np.divide(target, total, out=np.ones_like(target), where=total > 0)
        wait, cpu = wait * scale, cpu * scale
        wait = np.where(total > 0, wait, target)
    result = (wait, cpu, f.threads)
    m.cache.parts[key] = result
    m.cache.cpu_means[key] = float(cpu.mean())
    return result


def stage_duration_ms(m: ModelState, sid: str, memory_mb: int, arch: str = "x86_64") -> np.ndarray:
    """Quantile values of one instance of ``sid`` running alone at ``memory_mb``."""
    wait, cpu, threads = parts(m, sid, memory_mb, arch)
    return wait + cpu / min(vcpus(memory_mb), threads)


def level_draws(m: ModelState, sid: str, width: int, first: int = 0) -> np.ndarray:
    """Which quantile level each of ``width`` instances of ``sid`` takes in each draw
    (``first``: the first instance's index): fixed per stage, so that two plans are
    compared on the same draws (common random numbers)."""
    key = (sid, width, first)
    if key not in m.cache.levels:
        rng = np.random.default_rng([m.seed, zlib.crc32(sid.encode()), width, first])
        m.cache.levels[key] = rng.integers(0, LEVELS, size=(m.draws, width))
    return m.cache.levels[key]


def opaque_duration(m: ModelState, sid: str) -> np.ndarray:
    """Draws (ms) of an opaque stage, which runs in its framework whatever the plan
    (zeros when it has no samples)."""
    prof = m.profiles.get(sid)
    if prof is None or not prof.samples:
        return np.zeros(m.draws)
    samples = next(iter(prof.samples.values()))
    return quantiles(samples)[level_draws(m, sid, 1)[:, 0]]


def factors(m: ModelState, workflow: Workflow, sid: str) -> np.ndarray | None:
    """Per-instance factors of ``sid`` (:mod:`.skew`) when they describe this
    workflow's instances (the same count, at most :data:`SKEW_LIMIT`), else ``None``."""
    found = m.profiles[sid].instance_factors
    if found is None:
        return None
    width = workflow.stage(sid).parallelism
    return found if len(found) == width and width <= SKEW_LIMIT else None


def parallel_fraction(m: ModelState, sid: str, cores: float | None = None) -> float:
    """The share of ``sid``'s CPU work that runs in parallel next to other instances in
    one invocation (:mod:`.parallel`), for instances sharing ``cores`` when bundles on
    several core counts were profiled; unprofiled (no bundle size > 1 on two threads or
    more): :data:`UNPROFILED_PARALLEL_FRACTION`."""
    prof = m.profiles[sid]
    if cores is not None and prof.parallel_fractions:
        return parallel.at(prof.parallel_fractions, cores)
    phi = prof.parallel_fraction
    return UNPROFILED_PARALLEL_FRACTION if phi is None else phi


def fights(m: ModelState, sid: str) -> bool:
    """Whether ``sid``'s parallel fraction is below 0 at some core count (its instances
    fight over the interpreter lock)."""
    found = m.cache.fighting.get(sid)
    if found is None:
        prof = m.profiles.get(sid)
        values = [] if prof is None else list((prof.parallel_fractions or {}).values())
        if prof is not None and prof.parallel_fraction is not None:
            values.append(prof.parallel_fraction)
        found = m.cache.fighting[sid] = any(v < 0 for v in values)
    return found
