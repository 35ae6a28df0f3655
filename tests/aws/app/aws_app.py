"""Functions for the AWS tests' own workflows (two independent fan-outs joined at the end)."""

from __future__ import annotations


def make(n: int) -> list[int]:
    return list(range(n))


def square(x: int) -> int:
    return x * x


def negate(x: int) -> int:
    return -x


def join(a: list[int], b: list[int]) -> dict:
    return {"a": sum(a), "b": sum(b)}


def lonely() -> str:
    return "alone"
