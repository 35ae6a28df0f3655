"""Tags on tasks and the flow, a ``tags()`` block, and ``task_run_name`` templates."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, tags, task


@task(tags=["io"], task_run_name="load-{path}")
def load(path: str) -> list[int]:
    return json.loads(Path(path).read_text())


@task(task_run_name="negate-{x}")
def negate(x: int) -> int:
    return -x


@task(tags=["reduce"])
def total(values: list[int]) -> int:
    return sum(values)


@flow(flow_run_name="tags-names")
def tags_names(path: str) -> int:
    with tags("corpus"):
        values = load(path)
        negated = negate.map(values)
    return total(negated)
