"""Cross products: over literal lists (exact) and over a run-time value (opaque)."""

from __future__ import annotations

from airflow.sdk import dag, task


@task
def numbers() -> list[int]:
    return [1, 2]


@task
def combine(x: int, y: str, z: bool = False) -> str:
    return f"{x}{y}{z}"


@dag(dag_id="cross_product", schedule=None)
def cross_product() -> None:
    combine.expand(x=[1, 2], y=["a", "b", "c"])
    combine.partial(z=True).expand(x=numbers(), y=["a", "b"])


cross_product()
