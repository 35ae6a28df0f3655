"""Pools, queues and priorities set on Python tasks, alike or not along a chain.

``read`` and ``parse`` have the same settings, so a plan may fuse them; ``crunch`` differs
from ``parse`` only in its pool (Airflow's default pool) and ``crunch_again`` from
``crunch`` in nearly everything: one task has one pool, queue, owner..., so neither pair
may share a unit.
"""

from __future__ import annotations

from airflow.sdk import dag, task


@task(pool="io_pool", pool_slots=2, queue="io", priority_weight=5, weight_rule="absolute")
def read() -> list[int]:
    return [5, 6, 7]


@task(pool="io_pool", pool_slots=2, queue="io", priority_weight=5, weight_rule="absolute")
def parse(rows: list[int]) -> list[int]:
    return [r + 1 for r in rows]


@task(pool_slots=2, queue="io", priority_weight=5, weight_rule="absolute")
def crunch(rows: list[int]) -> int:
    return sum(rows)


@task(
    owner="data-team",
    queue="cpu",
    priority_weight=10,
    weight_rule="upstream",
    max_active_tis_per_dag=2,
    executor_config={"cpu": 2},
    task_display_name="Crunch (twice)",
)
def crunch_again(total: int) -> int:
    return total * 2


@dag(dag_id="pools_queues", schedule=None, default_args={"owner": "analytics"})
def pools_queues():
    crunch_again(crunch(parse(read())))


pools_queues()
