"""Composition primitives over Monte Carlo draws (arrays whose first axis is the draw).

- series: draws add;
- ``max_of``: the max of ``n`` i.i.d. copies of a distribution given by its draws, drawn
  exactly by inverse transform: if U is uniform, ``F^-1(U^(1/n))`` has the law of the max
  of n, so the cost does not grow with n (a 10,900-wide stage costs what a 10-wide one does);
- ``bundle_makespan``: b jobs on k worker threads sharing v vCPUs (processor sharing,
  slowed by the interpreter lock as Amdahl's law says for the stages' parallel fraction):
  the larger of the average thread load and the longest single job;
- ``sum_of``: the sum of ``n`` i.i.d. copies (exact for small n, normal beyond).
"""

from __future__ import annotations

import numpy as np

from wisefuse_plugins.model.parallel import cores

EXACT_LIMIT = 32


def max_of(draws: np.ndarray, n: int, u: np.ndarray) -> np.ndarray:
    """Draws of the max of ``n`` i.i.d. copies of the distribution of ``draws``."""
    if n <= 1:
        return draws
    ordered = np.sort(draws)
    idx = np.minimum((u ** (1.0 / n) * len(ordered)).astype(int), len(ordered) - 1)
    return ordered[idx]


def sum_of(mean: float, std: float, n: int, z: np.ndarray) -> np.ndarray:
    """Normal approximation of the sum of ``n`` i.i.d. copies (used when n is large)."""
    return n * mean + np.sqrt(n) * std * z


def shared_cores(vcpu: float, threads: int, job_threads: int, phi: float) -> float:
    """Cores ``threads`` concurrent jobs get together on ``vcpu`` cores: Amdahl's law with
    parallel fraction ``phi`` (:func:`wisefuse_plugins.model.parallel.cores`), never fewer
    than one job alone uses unless ``phi < 0`` (single-threaded jobs fighting over the
    interpreter lock: less than one core together)."""
    n = min(vcpu, threads * job_threads)
    if phi < 0 and job_threads == 1:
        return cores(n, phi)  # contention: together slower than one after the other
    return max(cores(n, phi), min(vcpu, job_threads))


def bundle_makespan(
    wait: np.ndarray,
    cpu: np.ndarray,
    vcpu: float,
    job_threads: int,
    pool_threads: int,
    phi: float = 1.0,
) -> np.ndarray:
    """Duration of running ``b`` jobs (columns) on ``pool_threads`` threads and ``vcpu`` cores.

    ``wait`` and ``cpu`` are ``(draws, b)``: per job the ms it waits and the CPU ms it needs
    on one full vCPU. A job alone runs at ``min(vcpu, job_threads)`` vCPUs; together they
    get :func:`shared_cores` (``phi=1``: perfect processor sharing).
    """
    b = wait.shape[1]
    k = max(1, min(pool_threads, b))
    alone = wait + cpu / min(vcpu, job_threads)
    if b == 1:
        return alone[:, 0]
    load = wait.sum(axis=1) / k + cpu.sum(axis=1) / shared_cores(vcpu, k, job_threads, phi)
    return np.maximum(load, alone.max(axis=1))


def bundle_makespan_large(
    wait_mean: float,
    wait_std: float,
    cpu_mean: float,
    cpu_std: float,
    longest: np.ndarray,
    b: int,
    vcpu: float,
    job_threads: int,
    pool_threads: int,
    z: np.ndarray,
    phi: float = 1.0,
) -> np.ndarray:
    """:func:`bundle_makespan` for many jobs: sums by the normal law, the longest job given."""
    k = max(1, min(pool_threads, b))
    waits = sum_of(wait_mean, wait_std, b, z)
    cpus = sum_of(cpu_mean, cpu_std, b, z)
    load = np.maximum(waits, 0) / k + np.maximum(cpus, 0) / shared_cores(vcpu, k, job_threads, phi)
    return np.maximum(load, longest)
