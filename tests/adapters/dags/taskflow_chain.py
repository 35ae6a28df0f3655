"""TaskFlow chain: extract -> transform -> load, by return values."""

from __future__ import annotations

from airflow.sdk import dag, task


@task
def extract() -> list[int]:
    return [1, 2, 3]


@task
def transform(data: list[int], factor: int) -> list[int]:
    return [x * factor for x in data]


@task(retries=2)
def load(rows: list[int], table: str = "t") -> int:
    return len(rows)


@dag(dag_id="taskflow_chain", schedule=None)
def taskflow_chain() -> None:
    load(transform(extract(), factor=2))


taskflow_chain()
