"""The profiler: run each Python stage alone at a grid of memory sizes and bundle sizes.

How (see ``docs/profiles.md``):

1. The whole workflow runs once (one unit per stage) so that every stage's real inputs
   are in the store, under a *materialising* run id.
2. For each Python stage and each (memory, bundle) setting, a one-stage unit is deployed
   at that memory and bundle size and invoked for a few *rounds*. Each round uses a
   fresh run id into which the stage's upstream outputs are copied (store bytes, no
   unpickling), so the stage computes and writes fresh outputs: the handler's
   idempotency (an output already stored is loaded, not recomputed) never skips work.
3. Each stage instance run gives one :class:`~wisefuse_plugins.profiles.archive.Sample`:
   the user's function alone in Lambda-equivalent time: under the local backend's
   CPU-time clock its own span converted (``fn_eq_ms``), otherwise the handler's
   ``fn_ms`` times the invocation's ``duration_ms / wall_ms`` (about 1 under the cgroup
   CPU quota and on Lambda); plus cold-start INIT, the
   invocation's peak memory, input and output bytes.

Mapped stages run one invocation per instance (bundle 1) over up to ``max_instances``
instances spread over the whole range, because their durations are skewed: every
instance's sample is kept. A bundle size ``b > 1`` runs one invocation per ``b``
instances (full bundles only) and records for each instance its share of the bundle's
time (the span of the bundle's functions over ``b``) with ``bundle_size=b``: compared
with the time alone it shows how much the instances gain from sharing the cores.

A setting is measured until it has at least ``runs`` samples for the stage's current
code hash, so a second call measures nothing new (and does not even materialise).
Settings that cannot run (out of memory, timeout, crash) are reported, recorded in the
archive's ``failures`` table and skipped next time unless ``retry_failed``.
"""

from __future__ import annotations

import math
import tempfile
import time
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.ir import Stage, Workflow
from wisefuse_plugins.plan.limits import MAX_MEMORY_MB, MIN_MEMORY_MB, bundle_threads
from wisefuse_plugins.plan.schema import Arch, Plan, Unit, single_stage_plan
from wisefuse_plugins.profiles.archive import Archive, FailureRecord, Sample
from wisefuse_plugins.profiles.deployer import Call, Deployer, failure_of
from wisefuse_plugins.profiles.materialised import Inputs, input_bytes, instance_count
from wisefuse_plugins.profiles.progress import Progress
from wisefuse_plugins.runtime import store as st
from wisefuse_plugins.runtime.executor import Invoker, RunFailed, execute
from wisefuse_plugins.runtime.spec import unit_spec, write_spec

DEFAULT_MEMORIES = (512, 1769, 3538)


class ProfilerError(WiseFuseError):
    """The workflow cannot be profiled at all (bad grid, opaque stages, it fails to run)."""


@dataclass(frozen=True, order=True)
class Setting:
    """One point of the profiling grid for one stage."""

    stage: str
    memory_mb: int
    bundle_size: int = 1


@dataclass(frozen=True)
class Failure:
    """A setting that could not run. ``earlier``: failed in an earlier call, not re-tried."""

    setting: Setting
    kind: str  # "out-of-memory" | "timeout" | "crash" | "error"
    message: str
    earlier: bool = False


@dataclass
class ProfileSummary:
    """What one :func:`profile_workflow` call did."""

    workflow: str
    backend: str
    arch: str
    measured: list[Setting] = field(default_factory=list)
    skipped: list[Setting] = field(default_factory=list)  # already had enough samples
    failures: list[Failure] = field(default_factory=list)
    unprofiled: dict[str, str] = field(default_factory=dict)  # stage -> why not
    samples: int = 0  # recorded by this call
    invocations: int = 0
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures


def _check_grid(memories: Sequence[int], bundles: Sequence[int], runs: int) -> None:
    if not memories:
        raise ProfilerError("no memory sizes to profile", hint="pass e.g. memories=(512, 1769)")
    for m in memories:
        if isinstance(m, bool) or not isinstance(m, int) or not MIN_MEMORY_MB <= m <= MAX_MEMORY_MB:
            raise ProfilerError(
                f"memory size {m!r} is outside Lambda's {MIN_MEMORY_MB}..{MAX_MEMORY_MB} MB",
                hint="give memory sizes in MB, e.g. 512,1769,3538",
            )
    if not bundles or any(not isinstance(b, int) or b < 1 for b in bundles):
        raise ProfilerError(f"bundle sizes must be integers >= 1, got {list(bundles)}")
    if runs < 1:
        raise ProfilerError(f"runs must be >= 1, got {runs}")


def _spread(n: int, k: int) -> list[int]:
    """``k`` instance numbers spread evenly over ``0..n-1`` (all of them when ``k >= n``)."""
    if k >= n:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)}) if k > 1 else [0]


def _bundle_sizes(
    stage: Stage, bundles: Sequence[int], instances: int, memory_mb: int
) -> list[int]:
    """Bundle sizes that mean something for ``stage`` at ``memory_mb``: 1 for unmapped, at
    most ``instances``, and sizes > 1 only where a bundle runs on more than one thread
    (``ceil(vCPU) >= 2``, from 1770 MB): on one thread its instances run one after the
    other, which the model composes exactly from bundle size 1. Where they share cores,
    the samples show how much of the stage's work runs in parallel (numpy and I/O) and how
    much the interpreter's lock serialises."""
    if not stage.mapped:
        return [1]
    sizes = {min(b, max(instances, 1)) for b in bundles}
    if bundle_threads(memory_mb) < 2:
        sizes = {b for b in sizes if b == 1} or ({1} if 1 in bundles else set())
    return sorted(sizes)


def _chunks(sampled: list[int], bundle_size: int) -> list[list[int] | None]:
    """The invocations of one round: ``sampled`` instances in full bundles of ``bundle_size``
    (a left-over smaller bundle would be measured as that size); ``[None]`` for an
    unmapped stage."""
    if not sampled:
        return [None]
    if bundle_size > 1 and len(sampled) > bundle_size:
        sampled = sampled[: len(sampled) - len(sampled) % bundle_size]
    return [sampled[i : i + bundle_size] for i in range(0, len(sampled), bundle_size)]


def _rounds(runs: int, per_round: int) -> int:
    return max(1, math.ceil(runs / max(per_round, 1)))


@dataclass(frozen=True)
class ProfileGrid:
    """What to measure: each stage's settings and how many samples each needs.

    ``runs``: samples wanted per (stage, memory, bundle); a mapped stage gets one per
    sampled instance per round, so ``ceil(runs / instances)`` rounds. ``stages``: profile
    only these stage ids (the workflow still runs whole once). ``max_instances``:
    instances of a mapped stage sampled per round (spread over all of them).
    ``retry_failed``: measure again settings that failed in an earlier call.
    """

    memories: Sequence[int] = DEFAULT_MEMORIES
    bundles: Sequence[int] = (1,)
    runs: int = 5
    arch: Arch = "x86_64"
    stages: Sequence[str] | None = None
    max_instances: int = 8
    retry_failed: bool = False


@dataclass(frozen=True)
class ProfileBench:
    """Where the stages run.

    ``backend``: the executor's invoker
    (:class:`~wisefuse_plugins.runtime.backends.units.LocalUnits` or the AWS one);
    default: a fresh local Lambda (closed at the end) with a temporary store, whose
    functions time out after ``timeout_s`` and run the code under ``code_root`` (default:
    the workflow's ``source.root``; a given backend has its own). ``store``: the store
    the backend reads and writes (default: ``open_store(backend.store_url)``).
    ``backend_name``: what the samples are recorded under. ``workdir``: where unit specs
    are written (default: a temporary folder).
    """

    backend: Invoker | None = None
    backend_name: str = "local"
    store: st.Store | None = None
    code_root: str | Path | None = None
    workdir: str | Path | None = None
    timeout_s: float = 120.0


def profile_workflow(
    workflow: Workflow,
    grid: ProfileGrid = ProfileGrid(),
    bench: ProfileBench = ProfileBench(),
    *,
    archive: Archive | None = None,
    progress: bool = True,
    console: Any = None,
) -> ProfileSummary:
    """Measure every Python stage of ``workflow`` over ``grid`` on ``bench``; record samples
    in ``archive`` (default: :func:`~wisefuse_plugins.profiles.archive.open_archive`).

    Returns a :class:`ProfileSummary`; settings that cannot run are in ``failures``,
    never raised. Raises :class:`ProfilerError` when the workflow cannot be profiled at
    all (opaque stages, or it fails even at the largest memory).
    """
    t0 = time.perf_counter()
    _check_grid(grid.memories, grid.bundles, grid.runs)
    # the largest memory first: its settings are warm from the materialising run
    grid = replace(grid, memories=tuple(sorted(set(grid.memories), reverse=True)))
    summary = ProfileSummary(workflow.name, bench.backend_name, grid.arch)
    wanted = _wanted_stages(workflow, grid.stages, summary)
    with ExitStack() as stack:
        if archive is None:
            from wisefuse_plugins.profiles.archive import open_archive

            archive = stack.enter_context(open_archive())
        pending = _Pending(archive, workflow, grid, bench.backend_name)
        expected = {s.id: min(s.parallelism, grid.max_instances) for s in wanted}
        if not any(pending.settings(s, expected[s.id]) for s in wanted):
            for s in wanted:
                pending.settings(s, expected[s.id], summary)
            summary.wall_s = time.perf_counter() - t0
            return summary
        _refuse_opaque(workflow)
        run = _set_up(stack, workflow, grid, bench, archive, summary, Progress(progress, console))
        run.inputs = _materialise(stack, run)
        jobs = _jobs(run, wanted, pending)
        run.show.start(_total_invocations(jobs, grid.runs))
        for stage, todo, sampled in jobs:
            upstream = sorted(stage.upstream_ids())
            for setting in todo:
                run.show.describe(
                    f"{setting.stage} @ {setting.memory_mb} MB x{setting.bundle_size}"
                )
                got, failure = _measure(run, stage, setting, sampled, upstream)
                _record(run, pending, stage, setting, got, failure)
            for up in upstream:
                run.inputs.drop(up)
    summary.wall_s = time.perf_counter() - t0
    return summary


def _wanted_stages(
    workflow: Workflow, stages: Sequence[str] | None, summary: ProfileSummary
) -> list[Stage]:
    """The Python stages to profile (all, or those of ``stages``: an unknown id is an
    error); the opaque ones asked for go to ``summary.unprofiled`` with the reason."""
    wanted = [s for s in workflow.python_stages if stages is None or s.id in stages]
    if stages is not None:
        unknown = sorted(set(stages) - {s.id for s in workflow.stages})
        if unknown:
            raise ProfilerError(
                f"workflow {workflow.name!r} has no stage {unknown[0]!r}",
                hint=f"its Python stages: {', '.join(s.id for s in workflow.python_stages)}",
            )
    for s in workflow.stages:
        if not s.is_python and (stages is None or s.id in stages):
            summary.unprofiled[s.id] = f"opaque ({s.opaque_reason or 'not a Python function'})"
    return wanted


class _Pending:
    """Which settings of a stage still need samples, from what the archive already holds
    (samples and earlier failures of the stage's current code)."""

    def __init__(
        self, archive: Archive, workflow: Workflow, grid: ProfileGrid, backend_name: str
    ) -> None:
        self.grid = grid
        self.counts = archive.counts(workflow.name, backend=backend_name, arch=grid.arch)
        self.failed = {
            (f.stage, f.code_hash, f.memory_mb, f.bundle_size): f
            for f in archive.failures(workflow.name, backend=backend_name, arch=grid.arch)
        }

    def settings(
        self, s: Stage, instances: int, summary: ProfileSummary | None = None
    ) -> list[Setting]:
        """The settings of ``s`` to measure; with ``summary``, those skipped are reported
        there (enough samples already, or failed before and not to be retried)."""
        assert s.callable is not None
        out = []
        for m in self.grid.memories:
            for b in _bundle_sizes(s, self.grid.bundles, instances, m):
                setting = Setting(s.id, m, b)
                earlier = self.failed.get((s.id, s.callable.code_hash, m, b))
                if self.counts.get((s.id, s.callable.code_hash, m, b), 0) >= self.grid.runs:
                    if summary is not None:
                        summary.skipped.append(setting)
                elif earlier is not None and not self.grid.retry_failed:
                    if summary is not None:
                        summary.failures.append(
                            Failure(setting, earlier.kind, earlier.message, earlier=True)
                        )
                else:
                    out.append(setting)
        return out

    def failed_before(self, stage: Stage, setting: Setting) -> bool:
        assert stage.callable is not None
        key = (stage.id, stage.callable.code_hash, setting.memory_mb, setting.bundle_size)
        return key in self.failed


def _refuse_opaque(workflow: Workflow) -> None:
    """Opaque stages only their framework can run: the inputs cannot be materialised."""
    if any(not s.is_python for s in workflow.stages):
        raise ProfilerError(
            f"workflow {workflow.name!r} has opaque stages "
            f"({', '.join(s.id for s in workflow.stages if not s.is_python)}) that only "
            "their framework can run, so its inputs cannot be materialised here",
            hint="import the task history instead (wisefuse_plugins.profiles.importers)",
        )


@dataclass
class _Run:
    """One profiling call's workflow, grid and bench, as set up (:func:`_set_up`)."""

    workflow: Workflow
    grid: ProfileGrid
    backend_name: str
    archive: Archive
    summary: ProfileSummary
    show: Progress
    deployer: Deployer
    store: st.Store
    workdir: Path
    base: Plan  # one unit per stage at the largest memory
    inputs: Inputs | None = None  # once materialised

    @property
    def materialised(self) -> Inputs:
        assert self.inputs is not None
        return self.inputs


def _set_up(
    stack: ExitStack,
    workflow: Workflow,
    grid: ProfileGrid,
    bench: ProfileBench,
    archive: Archive,
    summary: ProfileSummary,
    show: Progress,
) -> _Run:
    """The backend, store and work folder (made here when the bench gives none, and
    closed with ``stack``), and the progress display, started."""
    root = Path(bench.code_root if bench.code_root is not None else workflow.source.root).resolve()
    backend, store = bench.backend, bench.store
    if backend is None:
        from wisefuse_plugins.runtime.backends.local import LocalLambda
        from wisefuse_plugins.runtime.backends.units import LocalUnits

        lam = stack.enter_context(LocalLambda(keep_alive_s=600))
        if store is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="wisefuse-prof-"))
            store = st.LocalStore(Path(tmp) / "store")
        backend = LocalUnits(lam, store.url, root, timeout_s=bench.timeout_s)
    elif store is None:
        store_url = getattr(backend, "store_url", None)
        if store_url is None:
            raise ProfilerError(
                "pass the backend's store", hint="profile_workflow(..., ProfileBench(store=...))"
            )
        store = st.open_store(store_url)
    workdir = bench.workdir
    if workdir is None:
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="wisefuse-units-"))
    stack.enter_context(show)
    return _Run(
        workflow=workflow,
        grid=grid,
        backend_name=bench.backend_name,
        archive=archive,
        summary=summary,
        show=show,
        deployer=Deployer(backend),
        store=store,
        workdir=Path(workdir),
        base=single_stage_plan(workflow, memory_mb=max(grid.memories), arch=grid.arch),
    )


def _materialise(stack: ExitStack, run: _Run) -> Inputs:
    """Run the workflow once, whole, so that every stage's real inputs are in the store
    (deleted when ``stack`` closes)."""
    workflow, top = run.workflow, max(run.grid.memories)
    materialised = f"prof-{uuid.uuid4().hex[:10]}"
    run.show.status(f"running {workflow.name} once at {top} MB to materialise inputs")
    stack.callback(run.store.delete_prefix, f"runs/{materialised}")
    try:
        execute(  # one invocation at a time: one warm worker per unit, reused below
            workflow,
            run.base,
            run.deployer,
            run.store,
            workdir=run.workdir,
            run_id=materialised,
            max_concurrency=1,
            fetch_outputs=False,
        )
    except RunFailed as err:
        raise ProfilerError(
            f"cannot profile {workflow.name!r}: it fails when run whole at {top} MB: {err.message}",
            hint="fix the failing task (run the DAG or flow as usual, e.g. dag.test(), to see"
            " its traceback) or profile larger memory sizes",
        ) from err
    except WiseFuseError as err:  # the executor cannot run this workflow at all
        raise ProfilerError(
            f"cannot profile {workflow.name!r}: running it whole failed: {err.message}",
            hint=err.hint,
        ) from err
    return Inputs(run.store, materialised)


def _jobs(
    run: _Run, wanted: list[Stage], pending: _Pending
) -> list[tuple[Stage, list[Setting], list[int]]]:
    """Per stage, the settings to measure and the instances sampled (spread over the
    instances the materialising run had); a stage mapped over nothing is unprofiled."""
    jobs: list[tuple[Stage, list[Setting], list[int]]] = []
    for s in wanted:
        n = instance_count(run.workflow, s, run.materialised) if s.mapped else 1
        if s.mapped and n == 0:
            run.summary.unprofiled[s.id] = "mapped over an empty list in the materialising run"
            continue
        sampled = _spread(n, run.grid.max_instances) if s.mapped else []
        todo = pending.settings(s, len(sampled), run.summary)
        if todo:
            jobs.append((s, todo, sampled))
    return jobs


def _total_invocations(jobs: list[tuple[Stage, list[Setting], list[int]]], runs: int) -> int:
    """Invocations all the jobs take (for the progress bar)."""
    return sum(
        _rounds(runs, sum(len(c) for c in chunks if c) or 1) * len(chunks)
        for _, todo, sampled in jobs
        for st_ in todo
        for chunks in [_chunks(sampled, st_.bundle_size)]
    )


def _record(
    run: _Run,
    pending: _Pending,
    stage: Stage,
    setting: Setting,
    got: list[Sample],
    failure: Failure | None,
) -> None:
    """A measured setting's samples into the archive (its earlier failure cleared), or
    its failure (reported, and kept so that the next call skips it)."""
    assert stage.callable is not None
    workflow, arch, summary = run.workflow, run.grid.arch, run.summary
    if failure is not None:
        summary.failures.append(failure)
        run.show.log(
            f"[yellow]cannot run[/] {setting.stage} at {setting.memory_mb} MB"
            f" (bundle {setting.bundle_size}): {failure.kind}: {failure.message}"
        )
        run.archive.add_failure(
            FailureRecord(
                workflow.name, stage.id, stage.callable.code_hash,
                setting.memory_mb, arch, setting.bundle_size, run.backend_name,
                failure.kind, failure.message[:2000],
            )
        )  # fmt: skip
        return
    summary.samples += run.archive.add(got)
    summary.measured.append(setting)
    if pending.failed_before(stage, setting):
        run.archive.clear_failures(
            workflow.name, stage.id, memory_mb=setting.memory_mb,
            bundle_size=setting.bundle_size, backend=run.backend_name, arch=arch,
        )  # fmt: skip


def _measure(
    run: _Run, stage: Stage, setting: Setting, sampled: list[int], upstream: list[str]
) -> tuple[list[Sample], Failure | None]:
    """All rounds of one setting: its samples, or the failure that stopped it."""
    assert stage.callable is not None
    workflow, inputs, arch = run.workflow, run.materialised, run.grid.arch
    unit = Unit(
        id=stage.id,
        stages=[stage.id],
        bundle_size=setting.bundle_size,
        memory_mb=setting.memory_mb,
        arch=arch,
    )
    base = run.base
    plan = base.model_copy(update={"units": [unit if u.id == unit.id else u for u in base.units]})
    spec_path = write_spec(
        unit_spec(workflow, plan, unit.id),
        run.workdir / f"{stage.id}.unit.json",  # one path: a new bundle size keeps warm workers
    )
    run.deployer.deploy(unit, spec_path)
    counts = {up: inputs.count(up) for up in upstream if inputs.count(up)}
    chunks = _chunks(sampled, setting.bundle_size)
    samples: list[Sample] = []
    for _ in range(_rounds(run.grid.runs, sum(len(c) for c in chunks if c) or 1)):
        run_id = f"prof-{uuid.uuid4().hex[:10]}"
        inputs.copy_into(run_id, upstream)
        try:
            for chunk in chunks:
                event: dict[str, Any] = {"run_id": run_id, "counts": counts}
                if chunk is not None:
                    event["instances"] = chunk
                call = run.deployer.call(unit.id, event)
                run.summary.invocations += 1
                run.show.advance()
                problem = failure_of(call)
                if problem is not None:
                    return [], Failure(setting, *problem)
                samples += _samples(workflow, stage, setting, arch, call, inputs, run.backend_name)
        finally:
            run.store.delete_prefix(f"runs/{run_id}")
    return samples, None


def _samples(
    workflow: Workflow,
    stage: Stage,
    setting: Setting,
    arch: str,
    call: Call,
    inputs: Inputs,
    backend_name: str,
) -> list[Sample]:
    """One sample per stage instance the invocation ran."""
    assert stage.callable is not None
    ratio = 1.0
    if call.wall_ms and call.wall_ms > 0 and call.duration_ms > 0:
        ratio = call.duration_ms / call.wall_ms
    out_bytes = {
        o.get("instance"): o.get("bytes")
        for o in call.payload.get("outputs", [])
        if o.get("stage") == stage.id
    }
    found = []
    timings = [
        t
        for t in call.payload.get("timings", [])
        if t.get("stage") == stage.id and not t.get("resumed")
    ]
    shared = _bundle_share_ms(timings, ratio) if len(timings) > 1 else None
    for t in timings:
        instance = t.get("instance")
        found.append(
            Sample(
                workflow=workflow.name,
                stage=stage.id,
                code_hash=stage.callable.code_hash,
                memory_mb=setting.memory_mb,
                duration_ms=_function_ms(t, ratio) if shared is None else shared,
                arch=arch,
                bundle_size=setting.bundle_size,
                backend=backend_name,
                instance=instance,
                init_ms=call.init_ms if call.cold else None,
                cold=call.cold,
                input_bytes=input_bytes(workflow, stage, instance, inputs),
                output_bytes=out_bytes.get(instance),
                peak_memory_mb=call.max_memory_mb or None,
                source="profiler",
            )
        )
    return found


def _bundle_share_ms(timings: list[dict[str, Any]], ratio: float) -> float:
    """Each instance's share of a bundle: the span of its functions (first start to last
    end, Lambda-equivalent) over the instances in it.

    Not each instance's own span: the instances start one after the other (each resolves
    its inputs first, holding the interpreter lock), so their spans overlap only in part
    and would hide how much they slow each other. Compared with the instances' time
    alone, the share shows it: half of it on two cores in parallel, all of it when the
    interpreter lock serialises them.
    """
    spans = [t["fn_t"] for t in timings if isinstance(t.get("fn_t"), list)]
    if len(spans) == len(timings):
        span_ms = (max(b for _, b in spans) - min(a for a, _ in spans)) * 1000 * ratio
    else:
        span_ms = max(float(t.get("fn_ms", 0.0)) for t in timings) * ratio
    return span_ms / len(timings)


def _function_ms(timing: dict[str, Any], ratio: float) -> float:
    """The function's Lambda-equivalent ms: its own span on the CPU-time clock when the
    backend measured it (``fn_eq_ms``), else its wall time times the invocation's ratio."""
    if "fn_eq_ms" in timing:
        return float(timing["fn_eq_ms"])
    return float(timing.get("fn_ms", 0.0)) * ratio
