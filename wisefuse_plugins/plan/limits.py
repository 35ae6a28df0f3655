"""AWS Lambda limits, as constants, so the optimizer and the local backend agree on them.

Source: https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html and
https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html (checked 2025-08).
"""

from __future__ import annotations

import math

MIN_MEMORY_MB = 128
MAX_MEMORY_MB = 10_240

#: Memory at which a function gets exactly one vCPU; the share grows linearly with memory.
MB_PER_VCPU = 1_769
MAX_VCPUS = 6.0

MAX_TIMEOUT_S = 900.0
#: The INIT phase of an on-demand function has its own 10 s budget.
INIT_TIMEOUT_S = 10.0

#: Synchronous (RequestResponse) invoke: request and response payloads.
MAX_SYNC_REQUEST_BYTES = 6 * 1024 * 1024  # 6,291,456
MAX_SYNC_RESPONSE_BYTES = 6 * 1024 * 1024 + 100  # 6,291,556, as in Lambda's error message
#: Asynchronous (Event) invoke payload.
MAX_ASYNC_REQUEST_BYTES = 1024 * 1024

ARCHITECTURES = ("x86_64", "arm64")


def vcpus(memory_mb: float) -> float:
    """CPU share (in vCPUs) Lambda gives a function of ``memory_mb``: memory / 1769, at most 6."""
    if memory_mb <= 0:
        raise ValueError(f"memory_mb must be positive, got {memory_mb}")
    return min(memory_mb / MB_PER_VCPU, MAX_VCPUS)


def bundle_threads(memory_mb: float) -> int:
    """Threads the runtime runs a bundle's instances on: ``ceil(vCPU)``, 1 to 6.

    One per (partial) vCPU: fewer would leave a share idle, more only adds switching.
    """
    return max(1, min(int(MAX_VCPUS), math.ceil(vcpus(memory_mb))))


def check_memory(memory_mb: int) -> int:
    """Return ``memory_mb`` if Lambda accepts it, else raise ``ValueError`` naming the range."""
    if (
        isinstance(memory_mb, bool)
        or not isinstance(memory_mb, int)
        or not MIN_MEMORY_MB <= memory_mb <= MAX_MEMORY_MB
    ):
        raise ValueError(
            f"memory_mb must be an integer in {MIN_MEMORY_MB}..{MAX_MEMORY_MB}, got {memory_mb!r}"
        )
    return memory_mb


def check_timeout(timeout_s: float) -> float:
    """Return ``timeout_s`` if Lambda accepts it (0 < t <= 900 s), else raise ``ValueError``."""
    if not 0 < timeout_s <= MAX_TIMEOUT_S:
        raise ValueError(f"timeout_s must be in (0, {MAX_TIMEOUT_S:g}] seconds, got {timeout_s!r}")
    return float(timeout_s)


def check_arch(arch: str) -> str:
    """Return ``arch`` if it is a Lambda architecture, else raise ``ValueError``."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {ARCHITECTURES}, got {arch!r}")
    return arch
