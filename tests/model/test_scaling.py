"""The exp (Parrotfish) law stays within what CPU shares allow outside the profiled sizes."""

from __future__ import annotations

import numpy as np

from wisefuse_plugins.model.scaling import fit, quantiles
from wisefuse_plugins.plan.limits import vcpus

from .synthetic import law_ms


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


def test_exp_law_between_profiled_sizes_speeds_up_at_most_as_the_share_grows():
    """A CPU-bound stage, flat above one vCPU, profiled at 512/1769/3538 MB (a little
    slower at 3538, as measured samples can be): the exp law alone drops to the 1769 MB
    time well before 1769 MB; at 1024 MB it may be at most v(1024) / v(512) = 2 times
    faster than at 512 MB, and never slower than there."""
    by_memory = {m: np.full(10, law_ms(0.0, 100.0, m)) for m in (512, 1769)}
    by_memory[3538] = np.full(10, 104.0)
    f = fit(by_memory, law="exp")
    a0, a1, a2 = f.exp
    raw = np.maximum(a0 + a1 * np.exp(-1024 / a2), 0.0)
    t512 = law_ms(0.0, 100.0, 512)
    assert np.all(raw < 0.9 * t512 * vcpus(512) / vcpus(1024))  # what the bound corrects
    for m in (768, 1024, 1500):
        got = f.durations(m)
        assert np.all(got >= t512 * vcpus(512) / vcpus(m) - 1e-9), m
        assert np.all(got <= t512 + 1e-9), m
    # between 1769 and 3538 MB: between the two profiled times
    assert np.all((f.durations(3008) >= 100 - 1e-9) & (f.durations(3008) <= 104 + 1e-9))


def test_law_choice_still_works_with_three_sizes():
    f = fit(_profile())
    assert f.law in ("vcpu", "exp") and f.loo_error is not None
    assert np.all(np.isfinite(f.durations(128))) and np.all(f.durations(128) > 0)


def test_one_thread_unless_clearly_faster_above_one_vcpu():
    """A single-threaded stage whose 3538 MB samples came out 8% faster than at 1769 MB by
    chance stays one thread (it would run on two cores alone and in bundles otherwise);
    one that really uses two threads is fitted with them."""
    noisy = {m: np.full(10, law_ms(0.0, 100.0, m)) for m in (512, 1769)}
    noisy[3538] = np.full(10, 92.0)
    assert fit(noisy, law="vcpu").threads == 1
    two = {m: np.full(10, 100.0 / min(vcpus(m), 2)) for m in (512, 1769, 3538)}
    assert fit(two, law="vcpu").threads == 2
