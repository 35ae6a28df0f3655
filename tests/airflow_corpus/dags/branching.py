"""Branching and short-circuiting around Python tasks."""

from __future__ import annotations

from airflow.sdk import dag, task


@task
def measure() -> int:
    return 42


@task.branch
def choose(size: int) -> str:
    return "big" if size > 10 else "small"


@task
def big() -> str:
    return "handled big"


@task
def small() -> str:
    return "handled small"


@task
def after_big(text: str) -> str:
    return text.upper()


@task.short_circuit
def is_weekend() -> bool:
    return False


@task
def weekend_job() -> str:
    return "weekend"


@task
def double(x: int) -> int:
    return 2 * x


@dag(dag_id="branching", schedule=None)
def branching():
    size = measure()
    b, s = big(), small()
    choose(size) >> [b, s]
    after_big(b)
    is_weekend() >> weekend_job()
    double(double(size))


branching()
