"""Async tasks called from a sync flow (Prefect runs each to completion)."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, task


@task
async def load(path: str) -> list[int]:
    return json.loads(Path(path).read_text())


@task
def total(values: list[int]) -> int:
    return sum(values)


@flow
def async_tasks(path: str) -> int:
    values = load.submit(path)
    return total(values)
