"""Nested task groups of Python tasks."""

from __future__ import annotations

from airflow.sdk import TaskGroup, dag, task


@task
def start() -> int:
    return 2


@task
def inc(x: int) -> int:
    return x + 1


@task
def mul(x: int, by: int) -> int:
    return x * by


@task
def finish(a: int, b: int) -> int:
    return a + b


@dag(dag_id="nested_groups", schedule=None)
def nested_groups():
    s = start()
    with TaskGroup("prepare", tooltip="prepare the numbers"):
        a = inc(s)
        with TaskGroup("scale"):
            b = mul(a, 3)
            c = mul.override(task_id="mul_again")(b, 2)
    with TaskGroup("side", prefix_group_id=False):
        d = inc.override(task_id="side_inc")(s)
    finish(c, d)


nested_groups()
