"""What the model is built from: per-stage measurements and per-target constants."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class StageProfile:
    """Measurements of one stage's function (one instance, warm, bundle size 1), and how
    its instances share an invocation's cores.

    ``samples`` maps ``(arch, memory_mb)`` to durations in ms. ``code_hash`` ties the
    samples to one version of the code: the model refuses to predict a stage whose
    current hash differs.
    """

    stage: str
    code_hash: str
    samples: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)
    output_bytes: float = 0.0  # per instance
    peak_memory_mb: float = 0.0  # the most the stage was seen to use, interpreter included
    init_ms: float = 0.0  # cold start of an execution environment that runs this stage
    #: share of its CPU work that runs in parallel next to other instances in one
    #: invocation (:mod:`.parallel`); ``None``: not profiled at a bundle size > 1
    parallel_fraction: float | None = None

    def arches(self) -> set[str]:
        return {a for a, _ in self.samples}

    def by_memory(self, arch: str) -> dict[int, np.ndarray]:
        return {m: np.asarray(v, dtype=float) for (a, m), v in self.samples.items() if a == arch}


@dataclass(frozen=True)
class Platform:
    """Constants of where units run and how they are orchestrated (not of any stage).

    Defaults describe AWS: S3 as the store and Step Functions Standard as orchestrator.
    The local backend and each framework have their own values, measured by the profiler.
    """

    name: str = "aws"
    store_latency_ms: float = 25.0  # per GET or PUT
    store_bandwidth_mb_s: float = 90.0  # MB/s for one stream
    invoke_overhead_ms: float = 5.0  # runtime + handler per invocation, billed
    orchestration_ms: float = 50.0  # from "upstream done" to "unit started" per step
    orchestration_usd_per_step: float = 0.025 / 1000  # Step Functions transition
    cold_probability: float = 0.0  # share of invocations that start cold
    max_concurrency: int = 1000  # invocations in flight at once
    bill_store_requests: bool = True

    def transfer_ms(self, nbytes: float, requests: float = 1.0) -> float:
        return requests * self.store_latency_ms + nbytes / (self.store_bandwidth_mb_s * 1e6) * 1000
