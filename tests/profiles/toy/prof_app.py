"""Stages for profiler tests: CPU-bound, sleeping, allocating a lot of memory."""

from __future__ import annotations


def burn(n: int) -> int:
    """Pure-Python arithmetic: its time scales with the CPU share (memory / 1769 vCPUs)."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def hog(x: int, mb: int) -> int:
    """Touch ``mb`` MB at once: over the memory limit at small sizes."""
    data = b"\x01" * (mb * 1024 * 1024)
    return len(data) + x % 2


def nap(ms: int) -> int:
    """Waits without using the CPU (like I/O): threads of one invocation overlap fully."""
    import time

    time.sleep(ms / 1000)
    return ms


def repeat(value: int, n: int) -> list[int]:
    """``n`` copies of ``value``: equal work for every instance of a mapped stage."""
    return [value] * n


def grid(n: int) -> dict:
    """A dict output with a list inside: a mapped stage downstream reads ``["sizes"]``."""
    return {"sizes": [1000 * (i + 1) for i in range(n)], "label": "grid"}
