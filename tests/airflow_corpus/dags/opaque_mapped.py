"""Mapped tasks that stay in Airflow: one reads the context, one maps over run-time kwargs."""

from __future__ import annotations

from airflow.sdk import dag, task


@task
def items() -> list[int]:
    return [4, 5, 6]


@task
def tag(x: int, **context) -> str:
    return f"{context['ti'].map_index}:{x}"


@task
def square(x: int) -> int:
    return x * x


@task
def collect(values: list) -> list:
    return sorted(values)


@task
def pairs() -> list[dict]:
    return [{"a": 1, "b": 2}, {"a": 3, "b": 4}]


@task
def add(a: int, b: int) -> int:
    return a + b


@dag(dag_id="opaque_mapped", schedule=None)
def opaque_mapped():
    xs = items()
    collect.override(task_id="collect_tags")(tag.expand(x=xs))
    collect.override(task_id="collect_squares")(square.expand(x=xs))
    collect.override(task_id="collect_sums")(add.expand_kwargs(pairs()))


opaque_mapped()
