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
    #: the same per number of cores the profiled bundles' instances shared, where bundles
    #: of several sizes were profiled (:func:`.parallel.at` reads between them)
    parallel_fractions: dict[float, float] | None = None
    #: a mapped stage whose instances keep their relative durations run after run: per
    #: instance index, its duration over the stage's typical one (mean 1); ``noise``
    #: holds the samples divided by them (:mod:`.skew`). ``None``: the instances are
    #: alike, drawn from ``samples``
    instance_factors: np.ndarray | None = None
    noise: dict[tuple[str, int], np.ndarray] | None = None

    def arches(self) -> set[str]:
        return {a for a, _ in self.samples}

    def by_memory(self, arch: str, *, noise: bool = False) -> dict[int, np.ndarray]:
        """Samples per memory size; with ``noise``, divided by their instance's factor."""
        source = self.noise if noise and self.noise is not None else self.samples
        return {m: np.asarray(v, dtype=float) for (a, m), v in source.items() if a == arch}


@dataclass(frozen=True)
class Platform:
    """Constants of where units run and how they are orchestrated (not of any stage).

    Defaults describe AWS: S3 as the store and Step Functions Standard as orchestrator.
    The local backend and each framework have their own values, measured by the profiler.
    """

    name: str = "aws"
    store_latency_ms: float = 25.0  # per GET (and per PUT unless put_latency_ms is set)
    store_bandwidth_mb_s: float = 90.0  # MB/s for one stream
    invoke_overhead_ms: float = 5.0  # runtime + handler per invocation, billed
    orchestration_ms: float = 50.0  # from "upstream done" to "unit started" per step
    orchestration_usd_per_step: float = 0.025 / 1000  # Step Functions transition
    cold_probability: float = 0.0  # share of invocations that start cold
    max_concurrency: int = 1000  # invocations in flight at once
    bill_store_requests: bool = True
    #: per PUT, when it differs from a GET (a local PUT waits for its fsync)
    put_latency_ms: float | None = None
    #: CPU ms at one vCPU per store request (system calls, small pickles): a function
    #: of ``m`` MB spends it ``1 / min(v(m), 1)`` times over; the latencies above do not
    #: shrink or grow with the share
    store_cpu_ms: float = 0.0
    #: the same for the runtime's own work per invocation (event, spec, response)
    invoke_cpu_ms: float = 0.0
    #: the most vCPUs a unit can really use here (None: Lambda's 6). The local backend
    #: runs on the host's cores: a larger share is emulated, not given, and the planner
    #: goes beyond it only for stages profiled at such a size (``Space.memories``)
    max_vcpus: float | None = None
    #: outputs whose pickle is at most this many bytes travel by value, in the responses
    #: and events the orchestrator passes on, with no store request (0: all through the
    #: store, as Step Functions here; :mod:`wisefuse_plugins.runtime.passing`)
    by_value_bytes: float = 0.0

    def describe(self) -> str:
        """One line for people: what a request and an invocation cost here."""
        put = self.store_latency_ms if self.put_latency_ms is None else self.put_latency_ms
        return (
            f"store GET {self.store_latency_ms:.2f} ms, PUT {put:.2f} ms, + {self.store_cpu_ms:.2f}"
            f" CPU-ms per request, {self.store_bandwidth_mb_s:.0f} MB/s; invocation overhead"
            f" {self.invoke_overhead_ms:.2f} ms + {self.invoke_cpu_ms:.2f} CPU-ms;"
            f" hand-off {self.orchestration_ms:.2f} ms (CPU-ms: at one vCPU)"
            + ("" if self.max_vcpus is None else f"; units up to {self.max_vcpus:g} vCPUs")
            + (
                f"; values up to {self.by_value_bytes / 1024:.0f} KB passed by value"
                if self.by_value_bytes
                else ""
            )
        )

    def by_value_ms(self, nbytes: float) -> tuple[float, float]:
        """(fixed ms, CPU ms at one vCPU) of a value of ``nbytes`` passed by value: no
        request, only its bytes to move (pickling, base64, the event)."""
        return 0.0, nbytes / (self.store_bandwidth_mb_s * 1e6) * 1000

    def request_ms(
        self, nbytes: float, requests: float = 1.0, put: bool = False
    ) -> tuple[float, float]:
        """(fixed ms, CPU ms at one vCPU) of ``requests`` GETs (PUTs with ``put``) moving
        ``nbytes`` in all. Moving the bytes counts as CPU: (un)pickling and copying them
        slow down at a small share (a Lambda function's network bandwidth grows with its
        memory, too); the latencies do not."""
        latency = self.put_latency_ms if put and self.put_latency_ms is not None else None
        per = self.store_latency_ms if latency is None else latency
        moving = nbytes / (self.store_bandwidth_mb_s * 1e6) * 1000
        return requests * per, requests * self.store_cpu_ms + moving

    def transfer_ms(self, nbytes: float, requests: float = 1.0, put: bool = False) -> float:
        """Ms of ``requests`` GETs (PUTs with ``put``) moving ``nbytes`` in all: latency and
        byte movement of :meth:`request_ms`, without the per-request CPU."""
        fixed, work = self.request_ms(nbytes, requests, put)
        return fixed + work - requests * self.store_cpu_ms
