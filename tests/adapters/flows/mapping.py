"""Every kind of .map(): scatter, broadcast, one-to-one, literal lists, gathers."""

from __future__ import annotations

from prefect import flow, task, unmapped


@task
def make(n: int) -> list[int]:
    return list(range(1, n + 1))


@task
def config() -> dict:
    return {"offset": 1000}


@task
def square(x: int, cfg: dict) -> int:
    return x * x + cfg["offset"]


@task
def shift(y: int, by: int) -> int:
    return y + by


@task
def total(values: list[int]) -> int:
    return sum(values)


@flow(name="mapping")
def mapping(n: int = 3) -> list[int]:
    xs = make(n)
    cfg = config()
    squares = square.map(xs, unmapped(cfg))
    shifted = shift.map(squares, by=[1, 2, 3])
    literal = square.map([5, 6], unmapped({"offset": 0}))
    return [total(shifted), total(literal)]
