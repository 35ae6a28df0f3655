"""Tasks the corpus flows import from another module (a sibling file, as users split them)."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import task


@task
def read_numbers(path: str) -> list[int]:
    """The numbers of a JSON file: the input the tests change between trace and run."""
    return json.loads(Path(path).read_text())


@task
def scale(x: int, factor: int) -> int:
    return x * factor


@task
def total(values: list[int]) -> int:
    return sum(values)
