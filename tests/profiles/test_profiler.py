"""The profiler on real local Lambda workers: grid coverage, resumability, OOM, CPU scaling."""

from __future__ import annotations

from pathlib import Path

import pytest

from wisefuse_plugins.ir import Const, Item, Output, Stage, Workflow, callable_ref, derive_edges
from wisefuse_plugins.model.predict import Model
from wisefuse_plugins.plan.schema import single_stage_plan
from wisefuse_plugins.profiles import (
    Archive,
    ProfileBench,
    ProfileGrid,
    Setting,
    profile_workflow,
)
from wisefuse_plugins.runtime.backends.local import LocalLambda
from wisefuse_plugins.runtime.backends.units import LocalUnits
from wisefuse_plugins.runtime.store import LocalStore

from ..runtime.toyflows import ROOT, toy_workflow
from .toy import prof_app

TOY = Path(prof_app.__file__).resolve().parent
#: About 30 ms of pure Python at one vCPU (here).
BURN_N = 800_000
HOG_MB = 700  # over 512 MB (+ the interpreter allowance), well under 1769 MB


@pytest.fixture(scope="module")
def lam():
    with LocalLambda(keep_alive_s=120) as backend:
        yield backend


def burn_hog(hog: bool = True) -> Workflow:
    stages = [
        Stage(
            id="burn",
            callable=callable_ref(prof_app.burn, TOY),
            bindings={"n": Const(value=BURN_N)},
        )
    ]
    if hog:
        stages.append(
            Stage(
                id="hog",
                callable=callable_ref(prof_app.hog, TOY),
                bindings={"x": Output(stage="burn"), "mb": Const(value=HOG_MB)},
            )
        )
    return Workflow(name="burn-hog", stages=stages, edges=derive_edges(stages))


def fastest(archive: Archive, workflow: str, stage: str) -> tuple[float, float]:
    """The fastest sample at 512 and at 1769 MB: the least disturbed by other work."""
    return tuple(  # type: ignore[return-value]
        min(x.duration_ms for x in archive.samples(workflow, stage=stage, memory_mb=m))
        for m in (512, 1769)
    )


def run_profiler(
    wf: Workflow, lam: LocalLambda, root: Path, tmp_path: Path, archive: Archive, **kw
):
    store = LocalStore(tmp_path / "store")
    units = LocalUnits(lam, store.url, root, timeout_s=60)
    summary = profile_workflow(
        wf,
        ProfileGrid(**kw),
        ProfileBench(backend=units, store=store, workdir=tmp_path / "units"),
        archive=archive,
        progress=False,
    )
    assert store.list("runs") == []  # every run the profiler made is cleaned up
    return summary


def test_every_stage_and_memory_is_measured_then_nothing_twice(lam, tmp_path):
    wf = toy_workflow(n=5)
    memories = (512, 1769, 3538)
    with Archive(f"sqlite:///{tmp_path / 'p.sqlite'}") as archive:
        summary = run_profiler(
            wf, lam, ROOT, tmp_path, archive, memories=memories, bundles=(1, 2), runs=3
        )
        assert summary.ok and not summary.unprofiled and not summary.skipped
        stats = archive.stats(wf)
        for s in wf.python_stages:
            for m in memories:
                assert stats[s.id, m, 1].count >= 3, (s.id, m)
                # bundles apply to mapped stages, where they run on 2 threads or more
                assert ((s.id, m, 2) in stats) == (s.mapped and m > 1769), (s.id, m)
        square = archive.samples("toy", stage="square", memory_mb=512, bundle_size=1)
        assert sorted(x.instance for x in square) == [0, 1, 2, 3, 4]  # one per instance
        assert all(x.output_bytes and x.peak_memory_mb and x.input_bytes for x in square)
        cold = [x for x in archive.samples("toy") if x.cold]
        assert cold and all(x.init_ms and x.init_ms > 0 for x in cold)
        total = archive.samples("toy", stage="total")
        assert all(x.input_bytes and x.input_bytes > 5 for x in total)  # 5 instances + config

        again = run_profiler(
            wf, lam, ROOT, tmp_path, archive, memories=memories, bundles=(1, 2), runs=3
        )
        assert again.samples == 0 and again.invocations == 0
        assert sorted(again.skipped) == sorted(summary.measured)

        profiles = archive.profiles_for(wf)
    assert set(profiles) == {s.id for s in wf.python_stages}
    prediction = Model(profiles).predict(wf, single_stage_plan(wf, 1769))
    assert prediction.p95_s >= prediction.p50_s > 0 and prediction.cost_usd > 0


def test_cpu_bound_slower_at_small_memory_and_oom_reported(lam, tmp_path):
    wf = burn_hog()
    with Archive(f"sqlite:///{tmp_path / 'p.sqlite'}") as archive:
        summary = run_profiler(wf, lam, TOY, tmp_path, archive, memories=(512, 1769), runs=5)
        assert [(f.setting, f.kind) for f in summary.failures] == [
            (Setting("hog", 512, 1), "out-of-memory")
        ]
        assert archive.samples("burn-hog", stage="hog", memory_mb=512) == []
        hogs = archive.samples("burn-hog", stage="hog", memory_mb=1769)
        assert len(hogs) == 5 and min(x.peak_memory_mb for x in hogs) >= HOG_MB
        # 0.29 vs 1 vCPU: about 3.5x on a quiet host. Under the cgroup clock, wall time
        # includes waits for a busy host's cores (shared CI machines), which can hit the
        # larger share hardest, so only the direction is checked here; the cpu-clock test
        # below, which discounts those waits, checks the size.
        small, large = fastest(archive, "burn-hog", "burn")
        assert small > large, (small, large)

        again = run_profiler(wf, lam, TOY, tmp_path, archive, memories=(512, 1769), runs=5)
        assert again.invocations == 0  # the failed setting is not retried by default
        assert [(f.setting.stage, f.earlier) for f in again.failures] == [("hog", True)]
        assert [f.kind for f in archive.failures("burn-hog")] == ["out-of-memory"]


def test_cpu_clock_durations_are_converted(tmp_path):
    """Unthrottled workers: fn_ms is wall time, scaled by the invocation's duration / wall."""
    wf = burn_hog(hog=False)
    with (
        LocalLambda(clock="cpu-clock", keep_alive_s=30) as lam,
        Archive(f"sqlite:///{tmp_path / 'p.sqlite'}") as archive,
    ):
        run_profiler(wf, lam, TOY, tmp_path, archive, memories=(512, 1769), runs=5)
        small, large = fastest(archive, "burn-hog", "burn")
    assert small > 2.0 * large, (small, large)  # 0.29 vs 1 vCPU: about 3.5x


def test_mapped_over_a_list_inside_a_dict_output(lam, tmp_path):
    stages = [
        Stage(id="grid", callable=callable_ref(prof_app.grid, TOY), bindings={"n": Const(value=3)}),
        Stage(
            id="burn",
            callable=callable_ref(prof_app.burn, TOY),
            bindings={"n": Item(stage="grid", key="sizes")},
            parallelism=3,
        ),
    ]
    wf = Workflow(name="grid", stages=stages, edges=derive_edges(stages))
    with Archive(f"sqlite:///{tmp_path / 'p.sqlite'}") as archive:
        summary = run_profiler(wf, lam, TOY, tmp_path, archive, memories=(1769,), runs=1)
        assert summary.ok and not summary.unprofiled
        burns = archive.samples("grid", stage="burn")
    assert sorted(s.instance for s in burns) == [0, 1, 2]
    assert all(s.input_bytes and s.input_bytes > 20 for s in burns)  # the whole dict is read


def test_parallel_fraction_tells_the_interpreter_lock_from_waiting(tmp_path):
    """Two instances of pure-Python arithmetic in one invocation on 2 vCPUs take turns on
    the interpreter lock (parallel fraction about 0); two that sleep overlap (about 1).
    The CPU-time clock sees it: a thread waiting for the lock is not runnable."""
    stages = [
        Stage(
            id="work",
            callable=callable_ref(prof_app.repeat, TOY),
            bindings={"value": Const(value=BURN_N), "n": Const(value=2)},
        ),
        Stage(
            id="burn",
            callable=callable_ref(prof_app.burn, TOY),
            bindings={"n": Item(stage="work")},
            parallelism=2,
        ),
        Stage(
            id="pauses",
            callable=callable_ref(prof_app.repeat, TOY),
            bindings={"value": Const(value=40), "n": Const(value=2)},
        ),
        Stage(
            id="nap",
            callable=callable_ref(prof_app.nap, TOY),
            bindings={"ms": Item(stage="pauses")},
            parallelism=2,
        ),
    ]
    wf = Workflow(name="gil", stages=stages, edges=derive_edges(stages))
    with (
        LocalLambda(clock="cpu-clock", keep_alive_s=30) as lam,
        Archive(f"sqlite:///{tmp_path / 'p.sqlite'}") as archive,
    ):
        run_profiler(wf, lam, TOY, tmp_path, archive, memories=(3538,), bundles=(1, 2), runs=4)
        profiles = archive.profiles_for(wf)
    burn, nap = profiles["burn"].parallel_fraction, profiles["nap"].parallel_fraction
    assert burn is not None and nap is not None
    # about 0 and about 1; on a host the other test worker keeps busy the lock-bound
    # stage measured up to 0.50 (CI), so the check is the gap and a loose bound each
    assert burn < 0.65 and nap > 0.75 and nap - burn > 0.3, (burn, nap)
    assert profiles["work"].parallel_fraction is None  # not mapped: never bundled
