"""Skewed instances: which instance is slow is known, and bundles are composed with it."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from wisefuse_plugins.model import parallel, skew
from wisefuse_plugins.model.predict import Model
from wisefuse_plugins.model.profile import StageProfile
from wisefuse_plugins.profiles.archive import Archive, Sample

from ..runtime.toyflows import plan, toy_workflow
from .synthetic import profile
from .test_predict import QUIET


@pytest.mark.parametrize("module", [skew, parallel])
def test_doctests(module):
    assert doctest.testmod(module).failed == 0


def runs(typical: list[float], noise: float, n: int = 4, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {i: t * (1 + noise * rng.standard_normal(n)) for i, t in enumerate(typical)}


def test_stable_skew_gives_factors_of_mean_one():
    typical = [10.0, 40.0, 10.0, 20.0]
    found = skew.instance_factors({("x86_64", 1769): runs(typical, 0.01)})
    assert found is not None
    assert found.mean() == pytest.approx(1.0)
    assert found == pytest.approx(np.array(typical) / np.mean(typical), rel=0.03)


def test_factors_combine_memory_sizes():
    by = {
        ("x86_64", 512): runs([30.0, 90.0], 0.0),
        ("x86_64", 1769): runs([10.0, 30.0], 0.0),
    }
    assert skew.instance_factors(by) == pytest.approx([0.5, 1.5])


@pytest.mark.parametrize(
    "by",
    [
        {("x86_64", 1769): runs([10.0, 10.5, 9.8], 0.2)},  # noise larger than the skew
        {("x86_64", 1769): runs([10.0, 10.1, 10.05], 0.0)},  # too little skew to matter
        {("x86_64", 1769): {0: np.array([10.0]), 2: np.array([50.0])}},  # instance 1 missing
        {("x86_64", 1769): {0: np.array([10.0])}},  # one instance
    ],
)
def test_no_factors_without_a_stable_skew(by):
    assert skew.instance_factors(by) is None


def skewed_model(wf, factors, phi=1.0):
    """square: 100 CPU-ms per typical instance, its instances scaled by ``factors``."""
    cpu = {"make": 1.0, "square": 100.0, "middle": 1.0, "config": 1.0, "total": 1.0}
    profiles = {
        s.id: profile(s.id, s.callable.code_hash, cpu=cpu[s.id], parallel_fraction=phi)
        for s in wf.python_stages
    }
    base = profiles["square"]
    f = np.asarray(factors, dtype=float)
    profiles["square"] = StageProfile(
        stage="square",
        code_hash=base.code_hash,
        # pooled samples: every instance's durations together
        samples={k: np.concatenate([v * x for x in f]) for k, v in base.samples.items()},
        parallel_fraction=phi,
        instance_factors=f,
        noise=dict(base.samples),
    )
    return Model(profiles, QUIET, draws=500)


def test_bundles_know_which_instances_they_hold():
    wf = toy_workflow(n=4)
    m = skewed_model(wf, [0.5, 0.5, 0.5, 2.5])
    p = plan(wf, [["make"], ["square"], ["middle"], ["config"], ["total"]], {"square": 2})
    unit = next(u for u in p.units if u.id == "square")
    kinds = m.invocations(wf, unit)
    assert [n for n, _ in kinds] == [1, 1]
    means = [float(inv.draws.mean()) for _, inv in kinds]
    # at 1769 MB one thread: instances 0+1 = 50 + 50 ms, 2+3 = 50 + 250 ms; + GET/PUT 20 ms each
    assert means == pytest.approx([100 + 40, 300 + 40], rel=1e-6)
    dur, count = m.unit_duration(wf, unit)
    assert count == 2 and float(dur.mean()) == pytest.approx(340, rel=1e-6)
    assert float(m.invocation(wf, unit).draws.mean()) == pytest.approx(340, rel=1e-6)


def test_alike_instances_drawn_from_the_pool_without_factors():
    """Without factors the pooled samples (50 or 250 ms) are drawn for any instance: the
    bundle of two is sometimes two slow ones, which the skew knows cannot happen."""
    wf = toy_workflow(n=4)
    pooled = skewed_model(wf, [0.5, 0.5, 0.5, 2.5])
    pooled.profiles["square"].instance_factors = None
    p = plan(wf, [["make"], ["square"], ["middle"], ["config"], ["total"]], {"square": 2})
    unit = next(u for u in p.units if u.id == "square")
    dur, _ = pooled.unit_duration(wf, unit)
    assert float(np.max(dur)) == pytest.approx(500 + 40, rel=1e-6)


def test_factors_for_another_width_are_not_used():
    wf = toy_workflow(n=5)
    m = skewed_model(wf, [0.5, 0.5, 0.5, 2.5])
    assert m.factors(wf, "square") is None


def test_archive_derives_factors_and_noise(tmp_path):
    wf = toy_workflow(n=3)
    stage = wf.stage("square")
    rows = [
        Sample(
            workflow=wf.name,
            stage="square",
            code_hash=stage.callable.code_hash,
            memory_mb=1769,
            duration_ms=typical * (1 + 0.01 * r),
            instance=i,
        )
        for r in range(3)
        for i, typical in enumerate([10.0, 20.0, 30.0])
    ]
    with Archive(f"sqlite:///{tmp_path / 'a.db'}") as archive:
        archive.add(rows)
        prof = archive.profiles_for(wf)["square"]
    assert prof.instance_factors == pytest.approx([0.5, 1.0, 1.5], rel=0.02)
    # what is left once the skew is divided out: the runs' own 1-2%
    assert prof.noise["x86_64", 1769] == pytest.approx(np.full(9, 20.2), rel=0.02)


def test_parallel_fraction_by_cores_reads_between_profiled_core_counts():
    wf = toy_workflow(n=6)
    m = skewed_model(wf, [1.0] * 6, phi=0.5)
    m.profiles["square"].instance_factors = None
    six = 10240 / 1769  # the cores 6 instances share at 10,240 MB
    m.profiles["square"].parallel_fractions = {2.0: 0.2, six: 0.8}
    assert m.parallel_fraction("square", 2.0) == pytest.approx(0.2)
    assert m.parallel_fraction("square", 1.5) == pytest.approx(0.2)  # the nearest below
    assert m.parallel_fraction("square", (2.0 + six) / 2) == pytest.approx(0.5)
    assert m.parallel_fraction("square") == pytest.approx(0.5)  # no cores: the summary
    # 6 instances on 6 threads at 10,240 MB use the 5.79-core figure: 600 CPU-ms / cores
    p = plan(wf, [["make"], ["square"], ["middle"], ["config"], ["total"]], {"square": 6}, 10240)
    unit = next(u for u in p.units if u.id == "square")
    cores = 1 / ((1 - 0.8) + 0.8 / six)
    dur, _ = m.unit_duration(wf, unit)
    assert float(dur.mean()) == pytest.approx(600 / cores + 6 * 20 / 6, rel=1e-6)


def test_archive_keeps_a_parallel_fraction_per_core_count(tmp_path):
    wf = toy_workflow(n=6)
    code = wf.stage("square").callable.code_hash

    def rows(memory, bundle, share):
        return [
            Sample(
                workflow=wf.name, stage="square", code_hash=code, memory_mb=memory,
                duration_ms=100.0 * share, instance=i, bundle_size=bundle,
            )
            for i in range(6)
            for _ in range(2)
        ]  # fmt: skip

    with Archive(f"sqlite:///{tmp_path / 'a.db'}") as archive:
        archive.add(rows(3538, 1, 1.0) + rows(10240, 1, 1.0))
        archive.add(rows(3538, 2, 0.75))  # x = 0.75 on 2 cores: phi 0.5
        archive.add(rows(10240, 6, 0.5))  # x = 0.5 on 5.79 cores: phi = 0.5 / (1 - 1/5.79)
        prof = archive.profiles_for(wf)["square"]
    by = prof.parallel_fractions
    assert sorted(by) == [2.0, 5.79]
    assert by[2.0] == pytest.approx(0.5)
    assert by[5.79] == pytest.approx(0.5 / (1 - 1769 / 10240), rel=1e-3)
