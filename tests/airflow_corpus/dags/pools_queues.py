"""Pools, queues and priorities set on Python tasks (some differ inside a chain)."""

from __future__ import annotations

from airflow.sdk import dag, task


@task(pool="io_pool", pool_slots=2, queue="io", priority_weight=5)
def read() -> list[int]:
    return [5, 6, 7]


@task(pool="io_pool", queue="io", priority_weight=5, weight_rule="absolute")
def parse(rows: list[int]) -> list[int]:
    return [r + 1 for r in rows]


@task(queue="cpu", priority_weight=10, weight_rule="upstream", max_active_tis_per_dag=2)
def crunch(rows: list[int]) -> int:
    return sum(rows)


@task(owner="data-team", executor_config={"cpu": 2}, task_display_name="Crunch (twice)")
def crunch_again(total: int) -> int:
    return total * 2


@dag(dag_id="pools_queues", schedule=None, default_args={"owner": "analytics"})
def pools_queues():
    crunch_again(crunch(parse(read())))


pools_queues()
