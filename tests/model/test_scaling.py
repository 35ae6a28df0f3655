"""The exp (Parrotfish) law stays within what CPU shares allow outside the profiled sizes."""

from __future__ import annotations

import numpy as np

from wisefuse_plugins.model.limits import vcpus
from wisefuse_plugins.model.scaling import fit, quantiles


def _profile() -> dict[int, np.ndarray]:
    """A CPU-bound stage with skewed instances, profiled as on a noisy host: ~1/vCPU from
    512 to 1769 MB, flat (noise) from 1769 to 3538 MB. Fitted to this, a0 + a1*exp(-m/a2)
    decays within a few hundred MB."""
    rng = np.random.default_rng(1)
    cpu = rng.lognormal(np.log(40.0), 0.9, size=30)  # ms on one full vCPU
    return {
        512: cpu / vcpus(512) * rng.uniform(0.97, 1.03, 30),
        1769: cpu * rng.uniform(0.97, 1.03, 30),
        3538: cpu * rng.uniform(1.0, 1.25, 30),
    }


def test_exp_law_does_not_explode_below_the_smallest_profiled_size():
    by_memory = _profile()
    f = fit(by_memory, law="exp")
    at_512 = quantiles(by_memory[512])
    # half the CPU share can at most double a duration
    limit = at_512 * vcpus(512) / vcpus(256)
    assert np.all(f.durations(256) <= limit * (1 + 1e-9))
    assert np.all(f.durations(256) >= at_512 * (1 - 1e-9))  # and is not faster than 512 MB


def test_exp_law_above_the_largest_profiled_size_is_bounded_by_the_share():
    by_memory = _profile()
    f = fit(by_memory, law="exp")
    at_3538 = quantiles(by_memory[3538])
    got = f.durations(10240)
    assert np.all(got <= at_3538 * (1 + 1e-9))
    assert np.all(got >= at_3538 * vcpus(3538) / vcpus(10240) * (1 - 1e-9))


def test_exp_law_is_untouched_between_profiled_sizes():
    by_memory = _profile()
    f = fit(by_memory, law="exp")
    a0, a1, a2 = f.exp
    for m in (768, 1024, 2048, 3008):
        assert np.allclose(f.durations(m), np.maximum(a0 + a1 * np.exp(-m / a2), 0.0)), m


def test_law_choice_still_works_with_three_sizes():
    f = fit(_profile())
    assert f.law in ("vcpu", "exp") and f.loo_error is not None
    assert np.all(np.isfinite(f.durations(128))) and np.all(f.durations(128) > 0)
