"""``.map()`` over a task's output with an ``unmapped()`` argument, then a gather."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, task, unmapped


@task
def load(path: str) -> list[int]:
    return json.loads(Path(path).read_text())


@task
def offset(x: int, by: int, scale: list[int]) -> int:
    return (x + by) * len(scale)


@task
def summed(values: list[int]) -> int:
    return sum(values)


@flow
def map_unmapped(path: str, by: int = 3) -> int:
    values = load(path)
    shifted = offset.map(values, by=unmapped(by), scale=unmapped([1, 2]))
    return summed(shifted)
