"""Stages for profiler tests: one CPU-bound, one that allocates a lot of memory."""

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


def grid(n: int) -> dict:
    """A dict output with a list inside: a mapped stage downstream reads ``["sizes"]``."""
    return {"sizes": [1000 * (i + 1) for i in range(n)], "label": "grid"}
