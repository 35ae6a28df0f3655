"""How much of a stage's work runs in parallel when instances share an invocation.

A bundle runs its instances as threads of one Python interpreter. NumPy and I/O release
the interpreter's lock (GIL); pure-Python code holds it, so two instances of a stage on
two vCPUs finish anywhere between once and twice as late as one alone. We describe a
stage by its *parallel fraction* ``phi`` (Amdahl's law): on ``n >= 1`` cores, ``k``
concurrent instances that each need ``c`` ms of CPU take together

    k * c * x,   x = (1 - phi) + phi / n

so they effectively get ``1 / x`` cores (:func:`cores`); below one core the share is
the limit and the lock costs nothing more. ``phi < 0`` (down to :data:`MIN_FRACTION`)
says the threads lose time fighting over the lock: less than one core together.

``phi`` is estimated from profiles at bundle size ``b > 1`` on two threads or more
(:func:`estimate`): the profiler records each instance's *share* of its bundle (the
span of the bundle's functions over ``b``), which is ``c * x``; its mean over the mean
time of the same instances alone gives ``x``, hence ``phi = (1 - x) / (1 - 1 / n)``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from wisefuse_plugins.model.limits import bundle_threads, vcpus

MIN_FRACTION = -1.0
"""Below 0, instances together run slower than one after the other: threads that take
the interpreter lock around every small numpy call fight over it across cores (two of
video's `extract_features` took 1.24x their time in sequence: ``phi = -0.48`` on 2 vCPUs).
At -1, two of them on two cores would take 1.5x."""


def cores(n: float, phi: float) -> float:
    """Cores concurrent jobs effectively get on ``n`` cores with parallel fraction ``phi``.

    Examples
    --------
    >>> cores(2.0, 1.0), cores(2.0, 0.0), cores(0.5, 0.0)
    (2.0, 1.0, 0.5)
    """
    if n <= 1:
        return n
    return 1.0 / ((1.0 - phi) + phi / n)


def estimate(
    alone: Mapping[object, np.ndarray],
    shares: Mapping[object, np.ndarray],
    memory_mb: int,
    bundle_size: int,
) -> float | None:
    """``phi`` from one setting: per-instance durations alone and shares of bundles of
    ``bundle_size``, both at ``memory_mb`` and keyed by instance. ``None`` when the setting
    cannot tell (one thread, or less than two cores) or nothing was measured both ways.

    Examples
    --------
    Two instances of 100 ms: in a bundle on 2 vCPUs each accounts for 75 ms (x = 0.75):

    >>> a = {0: np.array([100.0]), 1: np.array([100.0])}
    >>> estimate(a, {0: np.array([75.0]), 1: np.array([75.0])}, 3538, 2)
    0.5

    Each accounting for 124 ms (x = 1.24): together slower than in sequence:

    >>> round(estimate(a, {0: np.array([124.0]), 1: np.array([124.0])}, 3538, 2), 2)
    -0.48
    """
    k = min(bundle_size, bundle_threads(memory_mb))
    n = min(vcpus(memory_mb), k)
    if k < 2 or n <= 1.05:
        return None
    common = [key for key, v in shares.items() if len(v) and len(alone.get(key, ()))]
    if not common:
        return None
    base = float(np.mean([np.median(alone[key]) for key in common]))
    together = float(np.mean([np.median(shares[key]) for key in common]))
    if base <= 0:
        return None
    x = together / base
    return float(np.clip((1.0 - x) / (1.0 - 1.0 / n), MIN_FRACTION, 1.0))
