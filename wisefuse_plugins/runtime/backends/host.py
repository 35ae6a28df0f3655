"""What this machine lets the local Lambda enforce: cgroup controllers, cores, schedstat."""

from __future__ import annotations

import os
from dataclasses import dataclass

from wisefuse_plugins.runtime.backends import cgroups
from wisefuse_plugins.runtime.backends.cpuclock import schedstat_available


@dataclass(frozen=True)
class HostInfo:
    """What this machine lets the backend do, with the reason when it cannot."""

    cores: int
    cpu_cgroup: cgroups.Hierarchy | None
    cpu_reason: str
    memory_cgroup: cgroups.Hierarchy | None
    memory_reason: str
    schedstat: bool


def host_info() -> HostInfo:
    cpu, mem = cgroups.detect("cpu"), cgroups.detect("memory")
    return HostInfo(
        cores=len(os.sched_getaffinity(0)),
        cpu_cgroup=cpu.hierarchy,
        cpu_reason=cpu.reason,
        memory_cgroup=mem.hierarchy,
        memory_reason=mem.reason,
        schedstat=schedstat_available(),
    )
