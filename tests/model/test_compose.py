"""Composition primitives on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from wisefuse_plugins.model import compose
from wisefuse_plugins.model.scaling import LEVELS, fit

from .synthetic import law_ms


def test_max_of_n_exponentials_matches_harmonic_number():
    rng = np.random.default_rng(1)
    draws = rng.exponential(1.0, 200_000)
    u = rng.random(200_000)
    for n in (1, 10, 1000):
        expected = sum(1 / k for k in range(1, n + 1))  # E[max of n Exp(1)] = H_n
        assert compose.max_of(draws, n, u).mean() == pytest.approx(expected, rel=0.03)


def test_sum_of_constants_is_exact():
    z = np.random.default_rng(0).standard_normal(1000)
    assert np.all(compose.sum_of(5.0, 0.0, 7, z) == 35.0)


@pytest.mark.parametrize(
    ("vcpu", "b", "expected"), [(2.0, 4, 200.0), (0.5, 4, 800.0), (6.0, 4, 100.0), (1.0, 1, 100.0)]
)
def test_processor_sharing_of_equal_cpu_jobs(vcpu, b, expected):
    # b jobs of 100 CPU-ms; ceil(vcpu) threads share vcpu cores
    wait = np.zeros((10, b))
    cpu = np.full((10, b), 100.0)
    pool = max(1, int(np.ceil(vcpu)))
    out = compose.bundle_makespan(wait, cpu, vcpu, 1, pool)
    assert np.allclose(out, expected)


def test_waits_overlap_across_threads_but_not_within_one():
    wait = np.full((3, 4), 100.0)
    cpu = np.zeros((3, 4))
    assert np.allclose(
        compose.bundle_makespan(wait, cpu, 2.0, 1, 2), 200.0
    )  # 4 sleeps on 2 threads
    assert np.allclose(compose.bundle_makespan(wait, cpu, 0.5, 1, 1), 400.0)


def test_straggler_bounds_the_bundle():
    wait = np.zeros((1, 3))
    cpu = np.array([[10.0, 10.0, 500.0]])
    assert compose.bundle_makespan(wait, cpu, 6.0, 1, 6)[0] == pytest.approx(500.0)


def test_vcpu_law_fit_recovers_parts_and_extrapolates():
    truth = {m: np.full(20, law_ms(30.0, 1000.0, m)) for m in (256, 512, 1024)}
    f = fit(truth, law="vcpu")
    assert f.threads == 1
    assert f.wait[LEVELS // 2] == pytest.approx(30.0, rel=1e-3)
    assert f.cpu[LEVELS // 2] == pytest.approx(1000.0, rel=1e-3)
    for held_out in (768, 1769, 3538, 10240):
        assert f.durations(held_out)[LEVELS // 2] == pytest.approx(
            law_ms(30.0, 1000.0, held_out), rel=1e-3
        )


def test_law_choice_by_held_out_error():
    sizes = (256, 512, 1024, 1769, 3538)
    vc = {m: np.full(10, law_ms(10.0, 800.0, m)) for m in sizes}
    assert fit(vc).law == "vcpu"
    ex = {m: np.full(10, 50 + 900 * np.exp(-m / 700)) for m in sizes}
    f = fit(ex)
    assert f.law == "exp" and f.loo_error is not None and f.loo_error < 0.05
