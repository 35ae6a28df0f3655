"""A tiny app for runtime tests: make a list, two mapped steps, a gather, plus failure modes."""

from __future__ import annotations

import os
import time


def make(n: int, scale: int = 1) -> list[int]:
    return [i * scale for i in range(n)]


def square(x: int) -> int:
    return x * x


def add(y: int, offset: int = 1) -> int:
    return y + offset


def total(values: list[int], base: dict) -> dict:
    return {"sum": sum(values) + base["start"], "n": len(values)}


def config() -> dict:
    return {"start": 100}


def boom(y: int) -> int:
    if y == 4:
        raise ValueError(f"cannot handle {y}")
    return y


def flaky(y: int, marker: str) -> int:
    """Fails on the first attempt of instance 2 (the marker file records attempts)."""
    if y == 4 and not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write("failed once")
        raise RuntimeError("transient failure")
    return y


def nap(y: int, seconds: float = 0.2) -> int:
    time.sleep(seconds)
    return y


def unpicklable(y: int):
    return lambda: y
