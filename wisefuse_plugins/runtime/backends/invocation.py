"""What one local invocation returned and what it was billed, as Lambda's response and
REPORT line say it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Invocation:
    """What one invocation returned and what it cost, as Lambda's response and REPORT line."""

    request_id: str
    function_name: str
    payload: Any  # the handler's return value, JSON round-tripped; None on error
    error: dict[str, Any] | None  # {errorType, errorMessage, stackTrace}
    duration_ms: float  # Lambda-equivalent, in the clock mode below
    billed_duration_ms: int  # ceil(duration) + ceil(init) on a cold start
    init_duration_ms: float | None  # None when warm
    max_memory_used_mb: int
    memory_size_mb: int
    arch: str
    cold: bool
    cost_usd: float  # compute at memory_size_mb and arch + one request
    clock: str  # "cgroup" | "cpu-clock"
    memory_mode: str  # "cgroup" | "rlimit" | "none"
    worker_pid: int | None
    wall_ms: float  # measured wall time of the invocation on this host
    cpu_ms: float  # CPU time the handler used (all threads and reaped children)
    logs: str = ""  # the tail of what the handler printed during this invocation
    #: cpu-clock only: time its threads were runnable but waited for a host CPU (other
    #: load); discounted from duration_ms, and a sign of a noisy measurement when large
    host_wait_ms: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def report_line(self) -> str:
        """The invocation as a Lambda ``REPORT`` log line."""
        line = (
            f"REPORT RequestId: {self.request_id}\tDuration: {self.duration_ms:.2f} ms\t"
            f"Billed Duration: {self.billed_duration_ms} ms\tMemory Size: {self.memory_size_mb} MB\t"
            f"Max Memory Used: {self.max_memory_used_mb} MB"
        )
        if self.init_duration_ms is not None:
            line += f"\tInit Duration: {self.init_duration_ms:.2f} ms"
        return line
