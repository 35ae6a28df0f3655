"""Predict a plan's end-to-end latency distribution and cost per run.

For each unit the model draws the duration of one invocation (Monte Carlo over the
stages' fitted distributions), composes its invocations (max of ``ceil(N / b)`` bundles),
and walks the unit graph (a node starts when all its predecessors are done, after the
orchestration delay). Common random numbers (fixed seed per stage) make the comparison of
two plans a comparison of plans, not of noise.

What one invocation of unit ``u`` at memory ``m`` costs in time:

- inputs from outside ``u``: a store GET each (its latency, and the CPU a request and
  its bytes take, at the unit's share: :meth:`Platform.request_ms`); an input the whole bundle shares (broadcast,
  gather) is read once per invocation, before the jobs;
- the jobs: each instance's chain of fused stages (wait + CPU parts, summed), run by
  ``ceil(vCPU)`` threads on ``vCPU(m)`` cores (:func:`compose.bundle_makespan`), as
  much in parallel as the stages' parallel fraction lets them (:mod:`.parallel`);
- exported outputs: a store PUT each (and one per element when scattered); where the
  orchestrator passes small values itself (:attr:`Platform.by_value_bytes`), those move
  by value with no request, and their readers take them from the event;
- the runtime's own overhead (a fixed part and CPU at the unit's share), and a cold start
  with the platform's probability;
- all but the cold start times the unit's correction, when measured runs of a plan gave
  one (:mod:`.correct`; none by default).

Fusion shows up as the GETs, PUTs, orchestration steps and cold starts a fused edge no
longer has; bundling as fewer invocations sharing cores and shared reads.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.ir import Collect, Item, Output, Workflow
from wisefuse_plugins.model import compose, parallel
from wisefuse_plugins.model.parallel import setting_cores
from wisefuse_plugins.model.profile import Platform, StageProfile
from wisefuse_plugins.model.scaling import LEVELS, Fit, fit, quantiles
from wisefuse_plugins.plan.limits import bundle_threads, vcpus
from wisefuse_plugins.plan.pricing import DEFAULT, Pricing, lambda_cost
from wisefuse_plugins.plan.schema import Plan, Unit, unit_graph

Corrections = dict[tuple[tuple[str, ...], int, str], dict[int, float]]
"""(stages, bundle size, arch) -> {memory MB: measured / predicted invocation time}."""

SKEW_LIMIT = 64
"""Instances up to which a skewed mapped stage's invocations are told apart (each with its
instances' factors, :mod:`.skew`); wider stages draw their instances alike."""

UNPROFILED_PARALLEL_FRACTION = 0.0
"""What the model assumes of a stage never profiled in a bundle on two threads or more:
its instances gain nothing from sharing an invocation's cores (pure Python under the
interpreter lock). Cautious on purpose: a plan is not promised parallel speed-up that
was never measured; ``wisefuse profile --bundle 1,2`` at 3538 MB measures it."""


class ModelError(WiseFuseError):
    """The model cannot predict a plan (missing or stale profiles, impossible memory)."""


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

    def percentile(self, q: float) -> float:
        assert self.samples_s is not None
        return float(np.quantile(self.samples_s, q / 100))


@dataclass
class _Invocation:
    """Draws of one invocation's duration, and its store traffic."""

    draws: np.ndarray  # (R,) ms
    gets: float
    puts: float
    cold_ms: float = 0.0  # the mean the cold starts add to ``draws``

    @property
    def warm_ms(self) -> float:
        """Mean duration without cold starts: what warm runs measure."""
        return float(self.draws.mean()) - self.cold_ms


class Model:
    """A performance and cost model fitted to stage profiles.

    Parameters
    ----------
    profiles
        ``stage id -> StageProfile`` for every Python stage of the workflows to predict.
    platform
        Store, orchestration and cold-start constants of the target.
    pricing
        Prices (:data:`wisefuse_plugins.plan.pricing.DEFAULT`).
    draws
        Monte Carlo draws per prediction (1000 gives P99 within a few percent).
    law
        Force a scaling law (``"vcpu"`` or ``"exp"``); default: the better by held-out error.
    corrections
        Measured-over-predicted factors of units' invocation times, from runs of plans
        (:mod:`.correct`; which unit takes which factor: :meth:`correction`). Empty: the
        profiles alone.
    """

    def __init__(
        self,
        profiles: dict[str, StageProfile],
        platform: Platform | None = None,
        pricing: Pricing = DEFAULT,
        *,
        draws: int = 1000,
        seed: int = 0,
        law: str | None = None,
        corrections: Corrections | None = None,
    ) -> None:
        self.profiles = profiles
        self.corrections: Corrections = dict(corrections or {})
        self._by_stage: dict[int, dict[tuple[str, bool], float]] = {}
        self.platform = platform or Platform()
        self.pricing = pricing
        self.draws = draws
        self.seed = seed
        self.law = law
        self._fits: dict[tuple[str, str], Fit] = {}
        self._parts: dict[tuple[str, int, str], tuple[np.ndarray, np.ndarray, int]] = {}
        self._cpu_means: dict[tuple, float] = {}  # mean of parts()'s CPU, per the same key
        self._fighting: dict[str, bool] = {}  # stages whose parallel fraction is < 0
        self._levels: dict[tuple[str, int], np.ndarray] = {}
        self._invocations: dict[tuple, _Invocation] = {}
        self._known: dict[int, Workflow] = {}
        self._ranks: dict[int, dict[str, int]] = {}
        self._durations: dict[tuple, tuple[np.ndarray, int]] = {}
        self._io: dict[tuple, object] = {}  # what of a unit does not depend on its memory
        self._costs: dict[tuple, float] = {}
        rng = np.random.default_rng(seed)
        self._u = rng.random(draws)  # for order statistics
        self._z = rng.standard_normal(draws)  # for large-bundle sums
        self._cold = rng.random(draws)

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
        other._fits = self._fits
        other._parts = self._parts
        other._cpu_means = self._cpu_means
        return other

    def correction(self, unit: Unit, workflow: Workflow) -> float:
        """The factor measured runs give this unit's invocation time (:mod:`.correct`).

        A unit of the same stages, bundle size and architecture was measured: its factor
        at the nearest memory measured. Else a stage alone keeps its profile's prediction
        (the profiles measured exactly that), and a unit of several stages or instances
        takes the factors its stages had in measured units of several stages or
        instances *of the same kind* (:meth:`threaded` or not), weighted by the stages'
        predicted time (1.0 for a stage in none). Threads sharing a few cores are where
        the model is least sure (svd's whole DAG, four threads on two cores, measured
        15-30% over its prediction run after run, while its fused stages on one thread
        measured as predicted): their excess says nothing of units without them.
        """
        if not self.corrections:
            return 1.0
        found = self.corrections.get((tuple(unit.stages), unit.bundle_size, unit.arch))
        if found:
            near = min(found, key=lambda m: (abs(math.log(m / unit.memory_mb)), m))
            return found[near]
        if len(unit.stages) == 1 and unit.bundle_size == 1:
            return 1.0
        kind = self.threaded(workflow, unit.stages, unit.bundle_size, unit.memory_mb)
        by_stage = self._stage_factors(workflow)
        if not any((sid, kind) in by_stage for sid in unit.stages):
            return 1.0
        weighted = total = 0.0
        for sid in unit.stages:  # a stage never measured counts as predicted (1.0)
            w = float(self.stage_duration_ms(sid, unit.memory_mb, unit.arch).mean())
            weighted += w * by_stage.get((sid, kind), 1.0)
            total += w
        return weighted / total if total > 0 else 1.0

    def threaded(
        self, workflow: Workflow, stages: Sequence[str], bundle_size: int, memory_mb: int
    ) -> bool:
        """Whether a unit runs instances of a mapped stage at once on two threads or more."""
        return bool(self._together(workflow, stages, bundle_size, memory_mb))

    def _together(
        self, workflow: Workflow, stages: Sequence[str], bundle_size: int, memory_mb: int
    ) -> list[tuple[str, int]]:
        """The unit's mapped stages whose instances run at once on two threads or more,
        with how many run together."""
        if bundle_threads(memory_mb) < 2:
            return []
        order, bundled = self._layout(workflow, tuple(stages))
        found = []
        for sid in order:
            stage = workflow.stage(sid)
            together = min(bundle_size, stage.parallelism) if bundled else stage.parallelism
            if stage.mapped and together >= 2:
                found.append((sid, together))
        return found

    def _stage_factors(self, workflow: Workflow) -> dict[tuple[str, bool], float]:
        """Per stage and kind of unit (:meth:`threaded`), the geometric mean of the factors
        of the measured units of several stages or instances that hold it."""
        key = id(workflow)
        if key not in self._by_stage:
            logs: dict[tuple[str, bool], list[float]] = {}
            for (stages, bundle, _), by_memory in self.corrections.items():
                if len(stages) == 1 and bundle == 1:
                    continue  # a stage alone says nothing of how it composes
                for memory, factor in by_memory.items():
                    kind = self.threaded(workflow, stages, bundle, memory)
                    for sid in stages:
                        logs.setdefault((sid, kind), []).append(math.log(factor))
            self._by_stage[key] = {k: math.exp(sum(v) / len(v)) for k, v in logs.items()}
        return self._by_stage[key]

    # -- stages -------------------------------------------------------------------------

    def check(self, workflow: Workflow) -> None:
        """Raise :class:`ModelError` when a Python stage has no current profile."""
        for s in workflow.python_stages:
            self._profile(workflow, s.id)

    def _profile(self, workflow: Workflow, sid: str) -> StageProfile:
        prof = self.profiles.get(sid)
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

    def arches(self, workflow: Workflow) -> list[str]:
        """Architectures every Python stage has profiles for."""
        sets = [self._profile(workflow, s.id).arches() for s in workflow.python_stages]
        common = set.intersection(*sets) if sets else set()
        return sorted(common)

    def stage_fit(self, sid: str, arch: str, *, noise: bool = False) -> Fit:
        """The memory-scaling law of ``sid``; with ``noise``, of its samples with the
        instances' skew taken out (:mod:`.skew`)."""
        key = (sid, arch, noise)
        if key not in self._fits:
            by_memory = self.profiles[sid].by_memory(arch, noise=noise)
            if not by_memory:
                raise ModelError(
                    f"stage {sid!r} has no {arch} profile",
                    hint=f"profile it on {arch} or plan for another arch",
                )
            self._fits[key] = fit(by_memory, law=self.law)  # type: ignore[arg-type]
        return self._fits[key]

    def parts(
        self, sid: str, memory_mb: int, arch: str, *, noise: bool = False
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """(wait, cpu, threads) per quantile level of ``sid`` at ``memory_mb`` (with
        ``noise``: of a typical instance, to be scaled by an instance's factor).

        At a profiled size the measured quantiles are kept exactly (the fit only splits
        them into parts); elsewhere the fitted law gives them.
        """
        key = (sid, memory_mb, arch, noise)
        cached = self._parts.get(key)
        if cached is not None:
            return cached
        f = self.stage_fit(sid, arch, noise=noise)
        wait, cpu = f.split(memory_mb)
        prof = self.profiles[sid]
        source = prof.noise if noise and prof.noise is not None else prof.samples
        measured = source.get((arch, memory_mb))
        if measured is not None and len(measured):
            target = quantiles(measured)
            total = wait + cpu / min(vcpus(memory_mb), f.threads)
            scale = np.divide(target, total, out=np.ones_like(target), where=total > 0)
            wait, cpu = wait * scale, cpu * scale
            wait = np.where(total > 0, wait, target)
        result = (wait, cpu, f.threads)
        self._parts[key] = result
        self._cpu_means[key] = float(cpu.mean())
        return result

    def stage_duration_ms(self, sid: str, memory_mb: int, arch: str = "x86_64") -> np.ndarray:
        """Quantile values of one instance of ``sid`` running alone at ``memory_mb``."""
        wait, cpu, threads = self.parts(sid, memory_mb, arch)
        return wait + cpu / min(vcpus(memory_mb), threads)

    def _level_draws(self, sid: str, width: int, first: int = 0) -> np.ndarray:
        key = (sid, width, first)
        if key not in self._levels:
            rng = np.random.default_rng([self.seed, zlib.crc32(sid.encode()), width, first])
            self._levels[key] = rng.integers(0, LEVELS, size=(self.draws, width))
        return self._levels[key]

    # -- one invocation -------------------------------------------------------------------

    def _bytes(self, workflow: Workflow, src: str, dst: str) -> float:
        edge_bytes = workflow.edge(src, dst).bytes if workflow.graph.has_edge(src, dst) else 0
        if edge_bytes:
            return float(edge_bytes)
        prof = self.profiles.get(src)
        return float(prof.output_bytes) if prof else 0.0

    def _jobs(
        self,
        workflow: Workflow,
        stages: list[str],
        unit: set[str],
        memory: int,
        arch: str,
        width: int,
        first: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray, int, float, float, float]:
        """(wait, cpu) draws of ``width`` instance chains of ``stages``, with their own I/O,
        and the chain's parallel fraction (its stages', weighted by their mean CPU).

        ``first``: the jobs are instances ``first .. first + width - 1``, drawn with their
        own skew (:meth:`factors`); ``None``: any instances, drawn alike.

        The chain runs with the threads of its most threaded stage, ``T``; the stages run
        one after the other, each on its own threads, so a part of ``t`` threads counts
        ``min(v, T) / min(v, t)`` times its CPU: a chain alone then takes the sum of its
        stages alone (a 0.1 ms stage fitted with two threads must not halve the CPU of a
        single-threaded 300 ms stage fused before it).
        """
        wait = np.zeros((self.draws, width))
        cpu = np.zeros((self.draws, width))
        weighted = total_cpu = 0.0
        io, gets, puts = self._job_io(workflow, tuple(stages), frozenset(unit))
        shared = setting_cores(memory, width)
        kinds = [None if first is None else self.factors(workflow, sid) for sid, _ in io]
        parts = [
            self.parts(sid, memory, arch, noise=f is not None)
            for (sid, _), f in zip(io, kinds, strict=True)
        ]
        threads = max((t for _, _, t in parts), default=1)
        v = vcpus(memory)
        rate = min(v, threads)  # what the chain's CPU is divided by (compose)
        one = rate / min(v, 1.0)  # for a part on one thread
        for (sid, transfers), factors, (w, c, t) in zip(io, kinds, parts, strict=True):
            if t != threads:
                c = c * (rate / min(v, t))
            levels = self._level_draws(sid, width, first or 0)
            if factors is not None:
                scale = factors[first : first + width][None, :]
                wait += w[levels] * scale
                cpu += c[levels] * scale
            else:
                wait += w[levels]
                cpu += c[levels]
            mean_cpu = self._cpu_means[sid, memory, arch, factors is not None]
            weighted += mean_cpu * self.parallel_fraction(sid, shared)
            total_cpu += mean_cpu
            for ms, cpu_ms in transfers:  # requests: one thread
                wait += ms
                cpu += cpu_ms * one if one != 1.0 else cpu_ms
        phi = weighted / total_cpu if total_cpu > 0 else 1.0
        return wait, cpu, threads, gets, puts, phi

    def factors(self, workflow: Workflow, sid: str) -> np.ndarray | None:
        """Per-instance factors of ``sid`` (:mod:`.skew`) when they describe this
        workflow's instances (the same count, at most :data:`SKEW_LIMIT`), else ``None``."""
        found = self.profiles[sid].instance_factors
        if found is None:
            return None
        width = workflow.stage(sid).parallelism
        return found if len(found) == width and width <= SKEW_LIMIT else None

    def parallel_fraction(self, sid: str, cores: float | None = None) -> float:
        """The share of ``sid``'s CPU work that runs in parallel next to other instances in
        one invocation (:mod:`.parallel`), for instances sharing ``cores`` when bundles on
        several core counts were profiled; unprofiled (no bundle size > 1 on two threads or
        more): :data:`UNPROFILED_PARALLEL_FRACTION`."""
        prof = self.profiles[sid]
        if cores is not None and prof.parallel_fractions:
            return parallel.at(prof.parallel_fractions, cores)
        phi = prof.parallel_fraction
        return UNPROFILED_PARALLEL_FRACTION if phi is None else phi

    def contended(self, workflow: Workflow, unit: Unit) -> bool:
        """Whether ``unit`` runs instances of a stage that fights over the interpreter
        lock (parallel fraction < 0) at once on two threads or more.

        Such instances measured far from any prediction, both ways and from run to run
        (video's bundles of 2 at 2048 MB measured 84% over the prediction in one run; its
        whole DAG at 10,240 MB 11% under it in one run and 60% over in the next): the
        planner leaves these units out. On one thread the instances run one after the
        other, as predicted.
        """
        if not any(map(self._fights, unit.stages)):
            return False
        return any(
            self.parallel_fraction(sid, setting_cores(unit.memory_mb, together)) < 0
            for sid, together in self._together(
                workflow, unit.stages, unit.bundle_size, unit.memory_mb
            )
        )

    def _fights(self, sid: str) -> bool:
        """Whether ``sid``'s parallel fraction is below 0 at some core count."""
        found = self._fighting.get(sid)
        if found is None:
            prof = self.profiles.get(sid)
            values = [] if prof is None else list((prof.parallel_fractions or {}).values())
            if prof is not None and prof.parallel_fraction is not None:
                values.append(prof.parallel_fraction)
            found = self._fighting[sid] = any(v < 0 for v in values)
        return found

    def _job_io(
        self, workflow: Workflow, stages: tuple[str, ...], unit: frozenset[str]
    ) -> tuple[list[tuple[str, list[tuple[float, float]]]], float, float]:
        """Per stage of a job, its store transfers (wall ms and CPU ms at one vCPU, in
        order), and the job's GETs/PUTs.

        They depend on which stages share the unit, not on memory: cached, because the
        planner asks for the same unit at every memory and bundle size.
        """
        key = (id(workflow), stages, unit)
        cached = self._io.get(key)
        if cached is not None:
            return cached
        p = self.platform
        io: list[tuple[str, list[tuple[float, float]]]] = []
        gets = puts = 0.0
        for sid in stages:
            transfers: list[tuple[float, float]] = []
            stage = workflow.stage(sid)
            for b in stage.bindings.values():
                if isinstance(b, Item) and b.stage not in unit:  # read this instance's element
                    nbytes = self._bytes(workflow, b.stage, sid)
                    if self.by_value(b.stage):  # the whole list comes in the event
                        transfers.append(p.by_value_ms(nbytes))
                        continue
                    if not workflow.stage(b.stage).mapped:
                        nbytes /= max(stage.parallelism, 1)
                    transfers.append(p.request_ms(nbytes))
                    gets += 1
            if self._exported(workflow, sid, unit):
                if self.by_value(sid):
                    transfers.append(p.by_value_ms(self._out_bytes(sid)))
                else:
                    requests = 1 + self._scattered_elements(workflow, sid, unit)
                    transfers.append(p.request_ms(self._out_bytes(sid), requests, put=True))
                    puts += requests
            io.append((sid, transfers))
        self._io[key] = (io, gets, puts)
        return io, gets, puts

    @staticmethod
    def _scattered_elements(workflow: Workflow, sid: str, unit: set[str]) -> int:
        """Elements an unmapped output is split into because another unit maps over it."""
        if workflow.stage(sid).mapped:
            return 0
        for d in workflow.successors(sid):
            dst = workflow.stage(d)
            if d not in unit and any(
                isinstance(b, Item) and b.stage == sid for b in dst.bindings.values()
            ):
                return dst.parallelism
        return 0

    def _out_bytes(self, sid: str) -> float:
        prof = self.profiles.get(sid)
        return float(prof.output_bytes) if prof else 0.0

    def by_value(self, sid: str) -> bool:
        """Whether ``sid``'s output (an instance's, for a mapped stage) travels by value
        here (:attr:`Platform.by_value_bytes`): a profiled size within the limit."""
        limit = self.platform.by_value_bytes
        prof = self.profiles.get(sid)
        return bool(limit) and prof is not None and prof.output_bytes <= limit

    @staticmethod
    def _exported(workflow: Workflow, sid: str, unit: set[str]) -> bool:
        succ = workflow.successors(sid)
        return not succ or any(d not in unit and workflow.edge(sid, d).kind == "data" for d in succ)

    def _shared_reads(
        self, workflow: Workflow, stages: list[str], unit: set[str]
    ) -> tuple[float, float, float]:
        """(fixed ms, CPU ms at one vCPU, GETs) of inputs read once per invocation: Output
        and Collect from outside."""
        key = (id(workflow), tuple(stages), "shared")
        cached = self._io.get(key)
        if cached is None:
            cached = self._io[key] = self._shared_reads_uncached(workflow, stages, unit)
        return cached

    def _shared_reads_uncached(
        self, workflow: Workflow, stages: list[str], unit: set[str]
    ) -> tuple[float, float, float]:
        p = self.platform
        ms = cpu = gets = 0.0
        seen: set[tuple[str, str]] = set()
        for sid in stages:
            for b in workflow.stage(sid).bindings.values():
                if (
                    isinstance(b, Output | Collect)
                    and b.stage not in unit
                    and (b.stage, b.kind) not in seen
                ):
                    seen.add((b.stage, b.kind))
                    nbytes = self._bytes(workflow, b.stage, sid)
                    requests = 1.0
                    if isinstance(b, Collect):
                        n = workflow.stage(b.stage).parallelism
                        nbytes *= n
                        requests = float(n)
                    if self.by_value(b.stage):
                        fixed, work = p.by_value_ms(nbytes)
                        requests = 0.0
                    else:
                        fixed, work = p.request_ms(nbytes, requests)
                    ms, cpu = ms + fixed, cpu + work
                    gets += requests
        return ms, cpu, gets

    def _rank(self, workflow: Workflow) -> dict[str, int]:
        """Position of each stage in the workflow's topological order (sorted once)."""
        rank = self._ranks.get(id(workflow))
        if rank is None:
            self._known.setdefault(id(workflow), workflow)
            rank = {s: i for i, s in enumerate(workflow.topological_order())}
            self._ranks[id(workflow)] = rank
        return rank

    def _layout(self, workflow: Workflow, stages: tuple[str, ...]) -> tuple[list[str], bool]:
        """A unit's stages in topological order and whether it is bundled (profiles checked)."""
        key = (id(workflow), stages, "layout")
        cached = self._io.get(key)
        if cached is None:
            for sid in stages:
                self._profile(workflow, sid)
            order = sorted(set(stages), key=self._rank(workflow).__getitem__)
            bundled = all(workflow.stage(s).mapped for s in stages)
            cached = self._io[key] = (order, bundled)
        return cached

    def _count(self, workflow: Workflow, unit: Unit) -> int:
        """:meth:`Unit.invocations`, from the cached layout."""
        if not self._layout(workflow, tuple(unit.stages))[1]:
            return 1
        return math.ceil(workflow.stage(unit.stages[0]).parallelism / unit.bundle_size)

    def invocations(self, workflow: Workflow, unit: Unit) -> list[tuple[int, _Invocation]]:
        """The invocations of ``unit`` in one run, as (how many, draws of one) pairs.

        Alike instances: the full bundles, and the last one with the instances left over.
        Skewed instances (:meth:`factors`): each invocation with its own instances.
        """
        key = (*_key(workflow, unit), "all")
        cached = self._invocations.get(key)
        if cached is not None:
            return cached  # type: ignore[return-value]
        order, bundled = self._layout(workflow, tuple(unit.stages))
        if not bundled:
            found = [(1, self._invocation(workflow, unit, None, 0))]
        else:
            n, b = workflow.stage(order[0]).parallelism, unit.bundle_size
            count = math.ceil(n / b)
            if self._skewed(workflow, unit):
                found = [
                    (1, self._invocation(workflow, unit, min(b, n - k * b), k * b))
                    for k in range(count)
                ]
            elif count > 1 and n % b:
                found = [
                    (count - 1, self._invocation(workflow, unit, None, None)),
                    (1, self._invocation(workflow, unit, n % b, None)),
                ]
            else:
                found = [(count, self._invocation(workflow, unit, None, None))]
        self._invocations[key] = found  # type: ignore[assignment]
        return found

    def _skewed(self, workflow: Workflow, unit: Unit) -> bool:
        """Whether ``unit``'s invocations are told apart by their instances' skew: a
        bundled unit with a skewed stage, all of whose invocations run at once."""
        key = (id(workflow), tuple(unit.stages), unit.bundle_size, "skewed")
        found = self._io.get(key)
        if found is None:
            order, bundled = self._layout(workflow, tuple(unit.stages))
            found = self._io[key] = (
                bundled
                and self._count(workflow, unit) <= self.platform.max_concurrency
                and any(self.factors(workflow, s) is not None for s in order)
            )
        return bool(found)

    def invocation(self, workflow: Workflow, unit: Unit) -> _Invocation:
        """Draws of the unit's slowest invocation (by mean): what its timeout must allow."""
        key = (*_key(workflow, unit), "slowest")
        found = self._invocations.get(key)
        if found is None:
            kinds = self.invocations(workflow, unit)
            found = kinds[0][1] if len(kinds) == 1 else max((i for _, i in kinds), key=_mean)
            self._invocations[key] = found
        return found

    def _invocation(
        self, workflow: Workflow, unit: Unit, width: int | None, first: int | None
    ) -> _Invocation:
        """Draws of one invocation of ``unit``: a full bundle, or ``width`` instances;
        ``first``: which instances (:meth:`_jobs`)."""
        self._known.setdefault(id(workflow), workflow)  # keeps the id from being reused
        key = (*_key(workflow, unit), width, first)
        cached = self._invocations.get(key)
        if cached is not None:
            return cached
        order, bundled = self._layout(workflow, tuple(unit.stages))
        members = set(order)
        v = vcpus(unit.memory_mb)
        pool = bundle_threads(unit.memory_mb)
        shared_ms, shared_cpu, gets = self._shared_reads(workflow, order, members)
        p = self.platform
        fixed_cpu = p.invoke_cpu_ms + shared_cpu  # CPU ms at one vCPU
        total = np.full(self.draws, shared_ms + p.invoke_overhead_ms + fixed_cpu / min(v, 1.0))
        puts = 0.0
        if bundled:
            full = min(unit.bundle_size, workflow.stage(order[0]).parallelism)
            chains = [(order, full if width is None else width)]
        else:  # stage after stage; a mapped stage inside runs all its instances here
            chains = [([sid], workflow.stage(sid).parallelism) for sid in order]
        for stages, jobs in chains:
            draws, job_gets, job_puts = self._makespan(
                workflow, stages, members, unit, jobs, v, pool, first
            )
            total += draws
            gets += job_gets * jobs
            puts += job_puts * jobs
        factor = self.correction(unit, workflow)
        if factor != 1.0:
            total = total * factor
        init = max((self.profiles[s].init_ms for s in unit.stages), default=0.0)
        cold_ms = 0.0
        if init and self.platform.cold_probability > 0:
            cold = init * (self._cold < self.platform.cold_probability)
            total = total + cold
            cold_ms = float(cold.mean())
        result = _Invocation(total, gets, puts, cold_ms)
        self._invocations[key] = result
        return result

    def _makespan(
        self,
        workflow: Workflow,
        stages: list[str],
        unit: set[str],
        u: Unit,
        width: int,
        v: float,
        pool: int,
        first: int | None,
    ) -> tuple[np.ndarray, float, float]:
        """Draws of ``width`` instance chains run together, and GETs/PUTs per chain."""
        exact = min(width, compose.EXACT_LIMIT)
        wait, cpu, threads, gets, puts, phi = self._jobs(
            workflow, stages, unit, u.memory_mb, u.arch, exact,
            first if width <= compose.EXACT_LIMIT else None,
        )  # fmt: skip
        if width <= compose.EXACT_LIMIT:
            return compose.bundle_makespan(wait, cpu, v, threads, pool, phi), gets, puts
        alone = wait[:, 0] + cpu[:, 0] / min(v, threads)
        longest = compose.max_of(alone, width, self._u)
        draws = compose.bundle_makespan_large(
            float(wait.mean()), float(wait.std()), float(cpu.mean()), float(cpu.std()),
            longest, width, v, threads, pool, self._z, phi,
        )  # fmt: skip
        return draws, gets, puts

    # -- the whole plan -------------------------------------------------------------------

    def unit_duration(self, workflow: Workflow, unit: Unit) -> tuple[np.ndarray, int]:
        """Draws of the time from a unit's start to its last invocation's end, and the count.

        Cached like :meth:`invocation` (the planner asks for the same unit many times);
        the array is shared: do not modify it.
        """
        key = _key(workflow, unit)
        cached = self._durations.get(key)
        if cached is not None:
            return cached
        count = self._count(workflow, unit)
        if self._skewed(workflow, unit):  # each invocation with its own instances
            kinds = self.invocations(workflow, unit)
            dur = np.max(np.vstack([inv.draws for _, inv in kinds]), axis=0)
        else:
            inv = self.invocation(workflow, unit)
            waves = math.ceil(count / self.platform.max_concurrency)
            in_flight = min(count, self.platform.max_concurrency)
            dur = compose.max_of(inv.draws, in_flight, self._u)
            if waves > 1:
                dur = dur + (waves - 1) * float(inv.draws.mean())
        self._durations[key] = (dur, count)
        return dur, count

    def unit_cost(self, workflow: Workflow, unit: Unit) -> float:
        """Expected cost of one run's invocations of ``unit`` (compute, requests, store); the
        last of a bundled unit's invocations bills only the instances left for it."""
        key = _key(workflow, unit)
        cached = self._costs.get(key)
        if cached is not None:
            return cached
        count = self._count(workflow, unit)
        invocations = self.invocations(workflow, unit)
        init = max((self.profiles[s].init_ms for s in unit.stages), default=0.0)
        cold_ms = self.platform.cold_probability * math.ceil(init)
        cost = 0.0
        for n, inv in invocations:
            billed = float(np.ceil(inv.draws).mean()) + cold_ms
            cost += n * lambda_cost(billed, unit.memory_mb, unit.arch, self.pricing)
            if self.platform.bill_store_requests:
                cost += n * (inv.puts * self.pricing.s3_put + inv.gets * self.pricing.s3_get)
        cost += self.platform.orchestration_usd_per_step * (1 + count)
        self._costs[key] = cost
        return cost

    def opaque_duration(self, sid: str) -> np.ndarray:
        """Draws (ms) of an opaque stage, which runs in its framework whatever the plan."""
        return self._opaque_ms(sid)

    def _opaque_ms(self, sid: str) -> np.ndarray:
        prof = self.profiles.get(sid)
        if prof is None or not prof.samples:
            return np.zeros(self.draws)
        samples = next(iter(prof.samples.values()))
        return quantiles(samples)[self._level_draws(sid, 1)[:, 0]]

    def predict(self, workflow: Workflow, plan: Plan) -> Prediction:
        """P50/P95/P99 end-to-end latency (s) and expected cost per run (USD) of ``plan``."""
        graph = unit_graph(plan, workflow)
        units = {u.id: u for u in plan.units}
        finish: dict[str, np.ndarray] = {}
        done: list[tuple[str, Unit, np.ndarray, int, float, _Invocation]] = []
        cost = 0.0
        orch = self.platform.orchestration_ms
        for node in _topo(graph):
            preds = list(graph.predecessors(node))
            start = (
                np.max(np.vstack([finish[p] for p in preds]), axis=0)
                if preds
                else np.zeros(self.draws)
            )
            if node in units:
                unit = units[node]
                dur, count = self.unit_duration(workflow, unit)
                ucost = self.unit_cost(workflow, unit)
                done.append((node, unit, dur, count, ucost, self.invocation(workflow, unit)))
                cost += ucost
            else:
                dur = self._opaque_ms(node)
            finish[node] = start + orch + dur
        e2e = (
            np.max(np.vstack(list(finish.values())), axis=0) / 1000
            if finish
            else np.zeros(self.draws)
        )
        q50, q95, q99 = np.quantile(e2e, [0.5, 0.95, 0.99])
        return Prediction(float(q50), float(q95), float(q99), cost, _records(done), e2e)


def _records(
    done: list[tuple[str, Unit, np.ndarray, int, float, _Invocation]],
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


def _mean(inv: _Invocation) -> float:
    return float(inv.draws.mean())


def _key(workflow: Workflow, unit: Unit) -> tuple:
    return (id(workflow), tuple(unit.stages), unit.memory_mb, unit.arch, unit.bundle_size)


def _topo(graph) -> list[str]:
    import networkx as nx

    return list(nx.topological_sort(graph))
