"""Results persisted: ``persist_result=True`` on tasks and the flow, a JSON serializer
(``storage_key.py`` is the case of a ``result_storage_key``)."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, task


@task(persist_result=True)
def load(path: str) -> list[int]:
    return json.loads(Path(path).read_text())


@task(persist_result=True, result_serializer="json")
def head(values: list[int], n: int) -> list[int]:
    return values[:n]


@task(persist_result=False)
def total(values: list[int]) -> int:
    return sum(values)


@flow(persist_result=True)
def persisted(path: str, n: int = 2) -> int:
    return total(head(load(path), n))
