"""Two DAGs in one file: a dag_id must choose."""

from __future__ import annotations

from airflow.sdk import dag, task


@task
def one() -> int:
    return 1


@dag(dag_id="first", schedule=None)
def first() -> None:
    one()


@dag(dag_id="second", schedule=None)
def second() -> None:
    one()


first()
second()
