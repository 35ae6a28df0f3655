"""How a stage's latency changes with memory: two fitted laws, chosen by held-out error.

Lambda gives a function ``v(m) = m / 1769`` vCPUs. A task that needs ``c`` ms of CPU on
one full vCPU and spends ``a`` ms waiting (I/O, sleep) takes about

    t(m) = a + c / min(v(m), T)                       (the "vcpu law")

where ``T`` is how many threads it keeps busy (1 for plain Python). This law splits a
duration into a part that memory buys down and a part it cannot, which the bundle model
needs (cores are shared, waits overlap). Parrotfish (Moghimi et al., 2023) fits instead

    t(m) = a0 + a1 * exp(-m / a2)                     (the "exp law").

Both are fitted per quantile level of the measured distribution, so percentiles
interpolate between profiled sizes and extrapolate beyond them. :func:`fit` keeps the law
with the lower leave-one-size-out error when there are three sizes or more, else the vcpu
law (two points fit two parameters exactly, so nothing would be held out).

The exp law has no notion of CPU share: extrapolated below the smallest profiled size it
grows without bound (profiled at 512/1769/3538 MB, a video stage got 16x its 512 MB time at
256 MB, where half the CPU share can at most double it), above the largest it may fall
further than more vCPUs allow, and between sizes it may drop to the larger size's time
too early (a stage flat above one vCPU got its 1769 MB time at 1024 MB). Its predictions
are therefore kept within the ratios of CPU shares to the nearest profiled sizes on
either side (the vcpu law satisfies this by construction).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.optimize import minimize_scalar, nnls

from wisefuse_plugins.plan.limits import vcpus

LEVELS = 64
"""Quantile levels kept per distribution: (j + 0.5) / LEVELS for j in 0..63."""

_LEVEL_GRID = (np.arange(LEVELS) + 0.5) / LEVELS
THREAD_CHOICES = (1, 2, 4, 6)

Law = Literal["vcpu", "exp"]


def quantiles(samples: np.ndarray) -> np.ndarray:
    """The distribution of ``samples`` as ``LEVELS`` sorted quantile values."""
    samples = np.asarray(samples, dtype=float)
    if samples.size == 0:
        raise ValueError("no samples")
    return np.quantile(samples, _LEVEL_GRID)


def _basis(memory: np.ndarray, threads: int) -> np.ndarray:
    return 1.0 / np.minimum(np.array([vcpus(m) for m in memory]), threads)


@dataclass(frozen=True)
class Fit:
    """A fitted law; ``wait`` and ``cpu`` per quantile level (vcpu law) or exp parameters."""

    law: Law
    threads: int
    wait: np.ndarray  # (LEVELS,) a: the part memory does not buy down (vcpu law)
    cpu: np.ndarray  # (LEVELS,) c: CPU ms on one full vCPU (vcpu law)
    exp: tuple[np.ndarray, np.ndarray, float] | None = None  # (a0, a1, a2) for the exp law
    loo_error: float | None = None  # median relative error of held-out sizes (P95 level)
    #: the profiled sizes (MB) and their quantile table, which bound the exp law
    anchors: tuple[np.ndarray, np.ndarray] | None = None

    def durations(self, memory_mb: float) -> np.ndarray:
        """Predicted quantile values (ms) at ``memory_mb``."""
        if self.law == "exp" and self.exp is not None:
            a0, a1, a2 = self.exp
            found = np.maximum(a0 + a1 * np.exp(-memory_mb / a2), 0.0)
            return (
                found if self.anchors is None else _within_shares(found, memory_mb, *self.anchors)
            )
        return self.wait + self.cpu / min(vcpus(memory_mb), self.threads)

    def split(self, memory_mb: float) -> tuple[np.ndarray, np.ndarray]:
        """(wait, cpu) parts at ``memory_mb``; cpu in ms on one full vCPU.

        For the exp law the split comes from the vcpu law fitted to the same data,
        rescaled so the parts add up to the exp law's prediction.
        """
        if self.law == "vcpu":
            return self.wait, self.cpu
        total = self.durations(memory_mb)
        share = min(vcpus(memory_mb), self.threads)
        vc_total = self.wait + self.cpu / share
        scale = np.divide(total, vc_total, out=np.ones_like(total), where=vc_total > 0)
        return self.wait * scale, self.cpu * scale


def _within_shares(
    found: np.ndarray, memory_mb: float, memory: np.ndarray, table: np.ndarray
) -> np.ndarray:
    """``found`` kept within what CPU shares allow, given the nearest profiled sizes below
    (``lo``) and above (``hi``) ``memory_mb``: more memory never slows a stage down, and
    makes it at most ``v(m) / v(lo)`` times faster than at ``lo``; below the smallest
    profiled size, less memory makes it at most ``v(hi) / v(m)`` times slower than at
    ``hi`` (between profiled sizes the data may say otherwise: bandwidth grows with
    memory too).

    Between profiled sizes this stops the exp law from jumping to the larger size's time
    right after the smaller one (profiled at 512/1769/3538 MB, a CPU-bound stage flat
    above one vCPU got its 1769 MB time at 1024 MB, where it has 0.58 of a vCPU).
    """
    v = vcpus(memory_mb)
    below = np.flatnonzero(memory <= memory_mb)
    above = np.flatnonzero(memory >= memory_mb)
    lower = np.zeros_like(found)
    upper = np.full_like(found, np.inf)
    if len(below):
        lo = below[-1]
        upper = np.minimum(upper, table[lo])
        lower = np.maximum(lower, table[lo] * vcpus(float(memory[lo])) / v)
    if len(above):
        hi = above[0]
        lower = np.maximum(lower, table[hi])
        if not len(below):
            upper = np.minimum(upper, table[hi] * vcpus(float(memory[hi])) / v)
    return np.clip(found, lower, np.maximum(upper, lower))


def _fit_vcpu(memory: np.ndarray, table: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """Non-negative least squares per level, threads chosen by total squared error."""
    best = None
    multi = _uses_more_than_one_core(memory, table)
    for threads in THREAD_CHOICES:
        if threads > 1 and not multi:
            continue  # one thread explains the data: more would read noise as speed-up
        design = np.column_stack([np.ones(len(memory)), _basis(memory, threads)])
        wait = np.empty(LEVELS)
        cpu = np.empty(LEVELS)
        sse = 0.0
        for j in range(LEVELS):
            coef, resid = nnls(design, table[:, j])
            wait[j], cpu[j] = coef
            sse += resid**2
        if best is None or sse < best[0] - 1e-9 * max(1.0, best[0]):
            best = (sse, threads, wait, cpu)
    assert best is not None
    return best[1], best[2], best[3]


MULTI_CORE_SPEEDUP = 1.15
"""How much faster (median) a stage must run at its largest profiled size above one vCPU
than at one vCPU to be fitted with more than one thread. Without it, samples at 3538 MB
a little faster than at 1769 MB by chance made a single-threaded stage a two-thread one,
and the model then ran it on two cores alone and in bundles (video's whole DAG predicted
at half its measured time)."""


def _uses_more_than_one_core(memory: np.ndarray, table: np.ndarray) -> bool:
    """Whether the largest profiled size (above one vCPU) is clearly faster than the
    largest at or below one vCPU (or, without one, than the smallest profiled)."""
    v = np.array([vcpus(float(m)) for m in memory])
    above = np.flatnonzero(v > 1.0)
    if not len(above):
        return False  # no size above one vCPU: threads cannot be told apart
    at_most_one = np.flatnonzero(v <= 1.0)
    ref = at_most_one[-1] if len(at_most_one) else 0
    if ref == above[-1]:
        return False
    base = table[ref, LEVELS // 2]
    most = table[above[-1], LEVELS // 2]
    return bool(most > 0 and base / most >= MULTI_CORE_SPEEDUP)


def _decay_constant(memory: np.ndarray, med: np.ndarray) -> float:
    """The decay constant a2 of ``a0 + a1 * exp(-m / a2)`` fitted to the median.

    For a fixed a2 the law is linear in (a0, a1), so the squared error is a function of a2
    alone (variable projection): a log-spaced grid over [16, 1e5] MB finds its basin and a
    bounded Brent search refines it. Some hundred tiny least-squares solves, where a general
    nonlinear fit (``curve_fit``) could take thousands of evaluations on flat or
    saturating data (seconds per stage) and still stop at a bound.
    """
    lo, hi = np.log(16.0), np.log(1e5)

    def error(log_a2: float) -> float:
        design = np.column_stack([np.ones(len(memory)), np.exp(-memory / np.exp(log_a2))])
        return float(nnls(design, med)[1])

    grid = np.linspace(lo, hi, 48)
    errors = [error(g) for g in grid]
    best = int(np.argmin(errors))
    if errors[best] <= 1e-12 * max(float(np.abs(med).max()), 1.0):
        return float(np.exp(grid[best]))
    left, right = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    found = minimize_scalar(error, bounds=(left, right), method="bounded", options={"xatol": 1e-4})
    log_a2 = float(found.x) if found.success and found.fun <= errors[best] else float(grid[best])
    return float(np.exp(log_a2))


def _fit_exp(memory: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """One decay constant a2 (fitted on the median), then a0, a1 per level by least squares."""
    a2 = _decay_constant(memory, table[:, LEVELS // 2])
    design = np.column_stack([np.ones(len(memory)), np.exp(-memory / a2)])
    a0 = np.empty(LEVELS)
    a1 = np.empty(LEVELS)
    for j in range(LEVELS):
        (a0[j], a1[j]), _ = nnls(design, table[:, j])
    return a0, a1, float(a2)


def _make(law: Law, memory: np.ndarray, table: np.ndarray) -> Fit:
    threads, wait, cpu = _fit_vcpu(memory, table)
    if law == "vcpu":
        return Fit("vcpu", threads, wait, cpu)
    return Fit("exp", threads, wait, cpu, exp=_fit_exp(memory, table), anchors=(memory, table))


P95_LEVEL = int(0.95 * LEVELS)


def loo_error(law: Law, memory: np.ndarray, table: np.ndarray) -> float:
    """Median relative error at the P95 level when each profiled size is left out in turn."""
    errors = []
    for k in range(len(memory)):
        keep = np.arange(len(memory)) != k
        fitted = _make(law, memory[keep], table[keep])
        pred = fitted.durations(float(memory[k]))[P95_LEVEL]
        true = table[k, P95_LEVEL]
        errors.append(abs(pred - true) / max(true, 1e-9))
    return float(np.median(errors))


def fit(by_memory: dict[int, np.ndarray], law: Law | None = None) -> Fit:
    """Fit a law to the quantiles measured at each memory size.

    ``by_memory`` maps memory (MB) to raw duration samples (ms). With ``law=None`` the
    better law by leave-one-out error is kept (needs three sizes or more).
    """
    if not by_memory:
        raise ValueError("no profiled memory sizes")
    memory = np.array(sorted(by_memory), dtype=float)
    table = np.vstack([quantiles(by_memory[int(m)]) for m in memory])
    if len(memory) == 1:
        # One size: assume CPU-bound single-threaded, the common case, and say so by law.
        share = min(vcpus(float(memory[0])), 1)
        return Fit("vcpu", 1, np.zeros(LEVELS), table[0] * share)
    if law is None and len(memory) >= 3:
        errs = {lw: loo_error(lw, memory, table) for lw in ("vcpu", "exp")}
        law = min(errs, key=errs.__getitem__)
        fitted = _make(law, memory, table)
        return Fit(
            fitted.law,
            fitted.threads,
            fitted.wait,
            fitted.cpu,
            fitted.exp,
            errs[law],
            fitted.anchors,
        )
    return _make(law or "vcpu", memory, table)
