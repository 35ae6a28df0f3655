"""expand_kwargs: literal dicts with the same keys, different keys, and a run-time list."""

from __future__ import annotations

from airflow.sdk import dag, task


@task
def pairs() -> list[dict]:
    return [{"x": 1, "y": 2}]


@task
def add(x: int, y: int = 0) -> int:
    return x + y


@dag(dag_id="expand_kwargs", schedule=None)
def expand_kwargs() -> None:
    add.expand_kwargs([{"x": 1, "y": 2}, {"x": 3, "y": 4}, {"x": 5, "y": 6}])
    add.expand_kwargs([{"x": 1}, {"x": 3, "y": 4}])
    add.expand_kwargs(pairs())


expand_kwargs()
