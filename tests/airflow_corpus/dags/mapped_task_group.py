"""A mapped task group: download and process each shard, then add the shards up."""

from __future__ import annotations

from airflow.sdk import dag, task, task_group


@task
def list_shards() -> list[int]:
    return [1, 2, 3]


@task
def download(shard: int) -> list[int]:
    return [shard * 10 + i for i in range(3)]


@task
def process(rows: list[int]) -> int:
    return sum(rows)


@task
def total(sums: list[int]) -> int:
    return sum(sums)


@task_group
def per_shard(shard: int) -> int:
    return process(download(shard))


@dag(dag_id="mapped_task_group", schedule=None)
def mapped_task_group():
    total(per_shard.expand(shard=list_shards()))


mapped_task_group()
