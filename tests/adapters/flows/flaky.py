"""A flow that fails its first attempt after one task and succeeds on its retry."""

from __future__ import annotations

from prefect import flow, task

ATTEMPTS = {"n": 0}


@task
def first() -> list[int]:
    return [1, 2]


@task
def second(values: list[int]) -> int:
    return sum(values)


@flow(name="flaky", retries=1, retry_delay_seconds=0)
def flaky() -> int:
    values = first()
    ATTEMPTS["n"] += 1
    if ATTEMPTS["n"] == 1:
        raise RuntimeError("first attempt fails")
    return second(values)
