"""A ``result_storage_key``: Prefect stores the result under that key and, the key being
the cache key too, hands later runs with the same key the stored result, even after the
file changed. A unit would compute it again, so the stage stays opaque (with the reason)
and the flow runs as it is."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, task


@task(persist_result=True, result_storage_key="corpus-numbers.json")
def load(path: str) -> list[int]:
    return json.loads(Path(path).read_text())


@task
def total(values: list[int]) -> int:
    return sum(values)


@flow
def storage_key(path: str) -> int:
    return total(load(path))
