"""The "cpu-clock" mode: a Lambda-equivalent duration from an unthrottled run.

The worker runs at full speed; the parent samples, every few milliseconds, the CPU time
and the run-queue delay of every thread of the worker and of its descendants
(/proc/PID/task/TID/schedstat: ns on CPU, ns runnable but waiting for a CPU). For each
interval of wall time ``dt`` with CPU time ``C`` and run-queue delay ``D`` summed over
threads, the time the same interval takes with a share of ``s`` vCPUs is::

    A = C + D                 runnable thread-time (demand)
    b = min(dt, A)            busy part of the interval (at least one thread runnable)
    p = A / b                 threads runnable on average while busy (>= 1)
    equivalent = (dt - b) + C / min(s, p)

The idle part ``dt - b`` (sleep, I/O, waiting on a lock) is kept as wall time; the CPU
work runs at the rate of ``min(s, p)`` cores: no faster than the share, and no faster
than the parallelism the code showed. Run-queue delay (other processes on a busy host,
more threads than host cores) is not time the function would wait on Lambda, so it only
informs ``p``. Single-threaded: ``dt - C - D + C / min(s, 1)``, exact. See
docs/local-backend.md for the limits (GIL, sub-interval phases, exited threads).
"""

from __future__ import annotations

import bisect
import itertools
import os
import time

Sample = dict[int, tuple[int, int]]  # tid -> (cpu ns, run-queue delay ns)


def equivalent_s(wall_s: float, cpu_s: float, delay_s: float, share: float) -> float:
    """Lambda-equivalent seconds of an interval (formula in the module docstring)."""
    if share <= 0:
        raise ValueError("share must be positive")
    demand = max(cpu_s, 0.0) + max(delay_s, 0.0)
    busy = min(wall_s, demand)
    if busy <= 0:
        return max(wall_s, 0.0)
    parallelism = demand / busy
    return (wall_s - busy) + max(cpu_s, 0.0) / min(share, parallelism)


def _read_schedstat(path: str) -> tuple[int, int] | None:
    try:
        with open(path, "rb") as f:
            fields = f.read().split()
        return int(fields[0]), int(fields[1])
    except (OSError, ValueError, IndexError):
        return None


def sample_tree(pid: int, _depth: int = 0) -> Sample | None:
    """Per-thread (cpu ns, delay ns) of ``pid`` and its descendants; ``None`` if unreadable."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    out: Sample = {}
    for tid in tids:
        stat = _read_schedstat(f"/proc/{pid}/task/{tid}/schedstat")
        if stat is not None:
            out[int(tid)] = stat
        if _depth < 8:
            try:
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                    children = f.read().split()
            except OSError:
                children = []
            for child in children:
                sub = sample_tree(int(child), _depth + 1)
                if sub:
                    out.update(sub)
    return out if out or _depth else None


def schedstat_available() -> bool:
    """True if this kernel exposes per-thread schedstat (CONFIG_SCHED_INFO)."""
    stat = _read_schedstat(f"/proc/self/task/{os.getpid()}/schedstat")
    return stat is not None and stat[0] > 0


class CpuClock:
    """Samples one process tree while it runs and converts the samples on demand.

    The parent wakes late on a busy host, so the sampled span overruns the invocation;
    :meth:`window` restricts the figures to the span the worker itself measured (both
    use CLOCK_MONOTONIC), counting partially covered intervals' CPU inside the window
    (outside it the worker is blocked on its pipe).
    """

    def __init__(self, pid: int, share: float) -> None:
        self.pid = pid
        self.share = share
        self.t = time.perf_counter()
        self.prev = sample_tree(pid)
        self.available = self.prev is not None
        self.equivalent = 0.0  # running total, for the timeout
        self.intervals: list[tuple[float, float, float, float]] = []  # t0, t1, cpu s, delay s

    def tick(self) -> float:
        """Close the interval since the last tick; returns the equivalent seconds so far."""
        cur = sample_tree(self.pid) if self.available else None
        now = time.perf_counter()
        t0, self.t = self.t, now
        if cur is None or self.prev is None:  # process gone or no schedstat: count wall time
            self.equivalent += now - t0
            return self.equivalent
        cpu = delay = 0
        for tid, (c, d) in cur.items():
            c0, d0 = self.prev.get(tid, (0, 0))
            if c >= c0:  # a reused tid would go backwards: treat it as new
                cpu, delay = cpu + c - c0, delay + d - d0
            else:
                cpu, delay = cpu + c, delay + d
        self.prev = cur
        self.intervals.append((t0, now, cpu / 1e9, delay / 1e9))
        self.equivalent += equivalent_s(now - t0, cpu / 1e9, delay / 1e9, self.share)
        return self.equivalent

    def window(
        self, start: float, end: float, *, prorate: bool = False
    ) -> tuple[float, float, float]:
        """(equivalent s, CPU s, run-queue delay s) of the samples within [start, end].

        ``prorate``: an interval only partly inside counts that fraction of its CPU (for a
        span inside an invocation, such as one function call, where the worker also works
        just outside it); by default it counts whole (the invocation's own span, outside
        which the worker is blocked on its pipe).
        """
        eq = cpu = delay = 0.0
        # intervals follow each other in time: skip to the first that ends after ``start``
        # (one function's span of a long invocation, bundles of many instances)
        first = bisect.bisect_right(self.intervals, start, key=lambda iv: iv[1])
        for t0, t1, c, d in itertools.islice(self.intervals, first, None):
            if t0 >= end:
                break
            lo, hi = max(t0, start), min(t1, end)
            if hi > lo:
                if prorate and t1 > t0:
                    part = (hi - lo) / (t1 - t0)
                    c, d = c * part, d * part
                eq += equivalent_s(hi - lo, c, d, self.share)
                cpu, delay = cpu + c, delay + d
        return eq, cpu, delay
