"""Skew between the instances of a mapped stage: which instance is the slow one.

A mapped stage's instances often differ in size (video chunks of different complexity,
trials with different hyper-parameters) and keep those differences from run to run: in
the example apps, one instance took 15x another while each instance's own runs varied
by 1-3%. Drawing every instance from the stage's pooled samples treats that spread as
noise: it makes a bundle of the light instances as likely as one of the heavy ones, and
sums of a bundle's instances vary far more than they do.

When the profiles show such a stable order -- the spread between the instances' typical
durations clearly above the spread of each instance's own runs -- each instance index
gets a factor (its typical duration over the stage's, mean 1), and the samples divided
by their instance's factor are what is left: run-to-run noise. The model then draws
instance ``i`` as ``factor[i] * noise`` and knows which instances share a bundle.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

#: the factors are used when the instances' typical durations spread (std of their logs)
#: at least this many times more than one instance's runs do
MIN_SIGNAL_TO_NOISE = 2.0
#: and by at least this much (std of the log factors): smaller skew changes nothing
MIN_SPREAD = 0.05

Setting = tuple[str, int]  # (arch, memory_mb)


def instance_factors(
    by_setting: Mapping[Setting, Mapping[int, np.ndarray]],
) -> np.ndarray | None:
    """Per instance index, its duration relative to the stage's (mean 1), or ``None``.

    ``by_setting`` maps ``(arch, memory_mb)`` to each instance's durations (bundle size
    1). Settings that profiled every instance ``0..n-1`` count, with ``n`` the widest
    seen; the factors of several settings are combined by geometric mean (an instance
    twice as slow stays twice as slow at every memory size, as far as CPU goes).

    Examples
    --------
    >>> runs = {("x86_64", 1769): {0: np.array([10.0, 10.1]), 1: np.array([30.0, 30.3])}}
    >>> instance_factors(runs).round(2).tolist()
    [0.5, 1.5]
    >>> same = {("x86_64", 1769): {0: np.array([10.0, 12.0]), 1: np.array([11.5, 10.1])}}
    >>> instance_factors(same) is None
    True
    """
    width = max((max(inst) + 1 for inst in by_setting.values() if inst), default=0)
    if width < 2:
        return None
    logs, noise = [], []
    for per in by_setting.values():
        if set(per) != set(range(width)) or any(len(per[i]) == 0 for i in range(width)):
            continue
        typical = np.array([np.median(per[i]) for i in range(width)])
        if np.any(typical <= 0):
            return None
        logs.append(np.log(typical / typical.mean()))
        noise += [float(np.std(np.log(per[i]))) for i in range(width) if len(per[i]) > 1]
    if not logs:
        return None
    log_factors = np.mean(logs, axis=0)
    spread = float(np.std(log_factors))
    within = float(np.median(noise)) if noise else 0.0
    if spread < MIN_SPREAD or spread < MIN_SIGNAL_TO_NOISE * within:
        return None
    factors = np.exp(log_factors)
    return factors / factors.mean()


def normalised(
    by_setting: Mapping[Setting, Mapping[int, np.ndarray]], factors: np.ndarray
) -> dict[Setting, np.ndarray]:
    """Each setting's samples divided by their instance's factor: the run-to-run noise
    around the stage's typical duration (instances beyond ``factors`` left out)."""
    out: dict[Setting, np.ndarray] = {}
    for key, per in by_setting.items():
        parts = [
            np.asarray(v, dtype=float) / factors[i] for i, v in per.items() if i < len(factors)
        ]
        if parts:
            out[key] = np.concatenate(parts)
    return out
