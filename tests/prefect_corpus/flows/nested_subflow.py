"""A subflow called from the flow: one opaque stage, its own tasks stay in Prefect."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, task


@task
def load(path: str) -> list[int]:
    return json.loads(Path(path).read_text())


@task
def double(values: list[int]) -> list[int]:
    return [2 * v for v in values]


@task
def count(values: list[int]) -> int:
    return len(values)


@flow
def inner(values: list[int]) -> int:
    return sum(double(values))


@flow
def nested_subflow(path: str) -> dict:
    values = load(path)
    doubled_sum = inner(values)
    n = count(values)
    return {"sum": doubled_sum, "n": n}
