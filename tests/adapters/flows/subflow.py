"""A flow that calls a subflow (kept as one opaque stage)."""

from __future__ import annotations

from prefect import flow, task


@task
def prepare(n: int) -> list[int]:
    return list(range(n))


@task
def scale(values: list[int], factor: int) -> list[int]:
    return [v * factor for v in values]


@task
def summary(values: list[int]) -> dict:
    return {"n": len(values), "sum": sum(values)}


@flow(name="inner-scale")
def inner_scale(values: list[int]) -> list[int]:
    return scale(values, 3)


@flow(name="with-subflow")
def with_subflow(n: int = 5) -> dict:
    values = prepare(n)
    scaled = inner_scale(values)
    return summary(scaled)
