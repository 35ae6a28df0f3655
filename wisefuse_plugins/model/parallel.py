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
span of the bundle's functions over ``b``), which is ``c * x``; a bundle's span over the
sum of the same instances' times alone gives ``x`` (bundles that their slowest instance
fills say little and are left out), hence ``phi = (1 - x) / (1 - 1 / n)``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from wisefuse_plugins.plan.limits import bundle_threads, vcpus

MIN_FRACTION = -1.0
"""Below 0, instances together run slower than one after the other: threads that take
the interpreter lock around every small numpy call fight over it across cores (two of
video's `extract_features` took 1.24x their time in sequence: ``phi = -0.48`` on 2 vCPUs).
At -1, two of them on two cores would take 1.5x."""


#: a bundle tells its parallel fraction when its span exceeds its longest instance alone
#: by more than this (run-to-run noise is a few percent)
STRAGGLER_MARGIN = 1.05


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


def at(fractions: Mapping[float, float], n: float) -> float:
    """The parallel fraction for ``n`` cores from those measured at some core counts:
    linear between them, the nearest beyond them (one number extrapolated from 2 threads
    to 6 had bundles at 10,240 MB predicted 40-70% slow where the 6 threads ran better).

    Examples
    --------
    >>> at({2.0: 0.2, 6.0: 0.6}, 4.0), at({2.0: 0.2, 6.0: 0.6}, 1.7), at({2.0: 0.2}, 6.0)
    (0.4, 0.2, 0.2)
    """
    points = sorted(fractions.items())
    return float(np.interp(n, [c for c, _ in points], [f for _, f in points]))


def setting_cores(memory_mb: int, bundle_size: int) -> float:
    """Cores ``bundle_size`` single-threaded instances share at ``memory_mb``: the vCPUs,
    at most one per thread of the bundle's pool (:func:`bundle_threads`)."""
    return min(vcpus(memory_mb), min(bundle_size, bundle_threads(memory_mb)))


def estimate(
    alone: Mapping[object, np.ndarray],
    shares: Mapping[object, np.ndarray],
    memory_mb: int,
    bundle_size: int,
) -> float | None:
    """``phi`` from one setting: per-instance durations alone and shares of bundles of
    ``bundle_size``, both at ``memory_mb`` and keyed by instance. ``None`` when the setting
    cannot tell (one thread, or less than two cores) or nothing was measured both ways.

    The bundles are the profiler's: the instances in sorted order, ``bundle_size`` at a
    time. A bundle's span ``S`` (its share times ``b``) is what the model composes as
    ``max(sum(c) / C, max(c))``: when ``S`` is clearly above its longest instance alone,
    ``x = S / sum(c)``; a bundle that its longest instance fills (a heavy instance next
    to light ones) only says the others fitted beside it, so it is left out -- unless
    all are, and then ``x`` over all of them is a lower bound of ``phi``. Pooling
    bundles unweighted by this rule had video's skewed chunks at ``phi = -0.3 .. -0.7``.

    Examples
    --------
    Two instances of 100 ms: in a bundle on 2 vCPUs each accounts for 75 ms (x = 0.75):

    >>> a = {0: np.array([100.0]), 1: np.array([100.0])}
    >>> estimate(a, {0: np.array([75.0]), 1: np.array([75.0])}, 3538, 2)
    0.5

    Each accounting for 124 ms (x = 1.24): together slower than in sequence:

    >>> round(estimate(a, {0: np.array([124.0]), 1: np.array([124.0])}, 3538, 2), 2)
    -0.48

    A heavy instance (150 ms) beside a light one (50 ms) that it hides, and a pair of
    equal ones that tells:

    >>> a = {0: np.array([150.0]), 1: np.array([50.0]), 2: np.array([80.0]), 3: np.array([80.0])}
    >>> together = {0: np.array([76.0]), 1: np.array([76.0]), 2: np.array([60.0]), 3: np.array([60.0])}
    >>> estimate(a, together, 3538, 2)
    0.5
    """
    k = min(bundle_size, bundle_threads(memory_mb))
    n = setting_cores(memory_mb, bundle_size)
    if k < 2 or n <= 1.05:
        return None
    measured = sorted(key for key, v in shares.items() if len(v))  # type: ignore[type-var]
    spans, works, telling = [], [], []
    for start in range(0, len(measured), bundle_size):
        members = measured[start : start + bundle_size]
        if any(not len(alone.get(key, ())) for key in members):
            continue
        times = [float(np.median(alone[key])) for key in members]
        span = len(members) * float(np.mean([np.median(shares[key]) for key in members]))
        spans.append(span)
        works.append(sum(times))
        telling.append(span > STRAGGLER_MARGIN * max(times))
    if not spans or sum(works) <= 0:
        return None
    if any(telling):
        spans = [s for s, t in zip(spans, telling, strict=True) if t]
        works = [w for w, t in zip(works, telling, strict=True) if t]
    x = sum(spans) / sum(works)
    return float(np.clip((1.0 - x) / (1.0 - 1.0 / n), MIN_FRACTION, 1.0))
