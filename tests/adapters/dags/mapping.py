"""Dynamic task mapping: literal expand, scatter, one-to-one, gather, partial broadcast."""

from __future__ import annotations

from airflow.sdk import dag, task


@task
def make_list(n: int) -> list[int]:
    return list(range(n))


@task
def square(x: int) -> int:
    return x * x


@task
def inc(x: int, step: int = 1) -> int:
    return x + step


@task
def total(values: list[int]) -> int:
    return sum(values)


@task
def load() -> dict:
    return {"rows": [1, 2, 3]}


@task
def train(data: dict, lr: float, epochs: int) -> float:
    return lr * epochs


@dag(dag_id="literal_expand", schedule=None)
def literal_expand() -> None:
    total(square.expand(x=[1, 2, 3]))


@dag(dag_id="scatter_gather", schedule=None)
def scatter_gather() -> None:
    squares = square.expand(x=make_list(5))
    incs = inc.partial(step=10).expand(x=squares)
    total(incs)


@dag(dag_id="partial_broadcast", schedule=None)
def partial_broadcast() -> None:
    data = load()
    train.partial(data=data, epochs=3).expand(lr=[0.1, 0.01])


literal_expand()
scatter_gather()
partial_broadcast()
