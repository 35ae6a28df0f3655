"""``get_run_logger()`` in tasks (and in the flow): log lines in the task runs' logs."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, get_run_logger, task


@task
def load(path: str) -> list[int]:
    logger = get_run_logger()
    values = json.loads(Path(path).read_text())
    logger.info("loaded %d values", len(values))
    return values


@task
def total(values: list[int]) -> int:
    get_run_logger().warning("summing %s", values)
    return sum(values)


@flow
def run_logger(path: str) -> int:
    get_run_logger().info("starting")
    return total(load(path))
