"""Tasks defined in another module of the project (``corpus_tasks``), imported by name."""

from __future__ import annotations

from corpus_tasks import read_numbers, scale, total
from prefect import flow


@flow
def other_module(path: str, factor: int = 4) -> int:
    values = read_numbers(path)
    scaled = scale.map(values, factor)
    return total(scaled)
