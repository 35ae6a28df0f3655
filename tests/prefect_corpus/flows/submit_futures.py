"""``.submit()`` and futures: futures passed on as arguments, ``.result()`` on the last."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, task


@task
def load(path: str) -> list[int]:
    return json.loads(Path(path).read_text())


@task
def smallest(values: list[int]) -> int:
    return min(values)


@task
def largest(values: list[int]) -> int:
    return max(values)


@task
def spread(low: int, high: int) -> int:
    return high - low


@flow
def submit_futures(path: str) -> int:
    values = load.submit(path)
    low = smallest.submit(values)
    high = largest.submit(values)
    return spread.submit(low, high).result()
