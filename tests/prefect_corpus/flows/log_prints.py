"""``log_prints=True`` on the flow and on a task: prints become log lines."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, task


@task
def load(path: str) -> list[int]:
    values = json.loads(Path(path).read_text())
    print(f"loaded {len(values)} values")
    return values


@task(log_prints=True)
def total(values: list[int]) -> int:
    result = sum(values)
    print(f"total {result}")
    return result


@flow(log_prints=True)
def log_prints(path: str) -> int:
    return total(load(path))
