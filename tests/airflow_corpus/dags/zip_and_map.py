"""XComArg .zip() and .map(): mapping over pairs and over transformed values."""

from __future__ import annotations

from airflow.sdk import dag, task


@task
def names() -> list[str]:
    return ["ada", "grace", "linus"]


@task
def ages() -> list[int]:
    return [36, 45, 28]


def shout(name: str) -> str:
    return name.upper()


@task
def greet(pair: tuple) -> str:
    name, age = pair
    return f"{name} is {age}"


@task
def length(name: str) -> int:
    return len(name)


@task
def join(lines: list[str]) -> str:
    return "; ".join(lines)


@task
def longest(lengths: list[int]) -> int:
    return max(lengths)


@dag(dag_id="zip_and_map", schedule=None)
def zip_and_map():
    who = names()
    join(greet.expand(pair=who.zip(ages())))
    longest(length.expand(name=who.map(shout)))


zip_and_map()
