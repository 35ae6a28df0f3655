"""Task retries with ``retry_delay_seconds``, a flow with retries too."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, task


@task(retries=2, retry_delay_seconds=0)
def load(path: str) -> list[int]:
    return json.loads(Path(path).read_text())


@task(retries=3, retry_delay_seconds=[0, 0, 0])
def squares(values: list[int]) -> list[int]:
    return [v * v for v in values]


@task(retries=1, retry_delay_seconds=0)
def total(values: list[int]) -> int:
    return sum(values)


@flow(retries=1, retry_delay_seconds=0)
def retries(path: str) -> int:
    return total(squares(load(path)))
