"""What the IR cannot express: unimportable functions, non-JSON literals, outputs it cannot bind."""

from __future__ import annotations

from prefect import flow, task

double = task(lambda values: [v * 2 for v in values])


def _make_nested():
    @task
    def inner(x: int) -> int:
        return x + 1

    return inner


inner = _make_nested()


@task
def source() -> list[int]:
    return [1, 2, 3]


@task
def area(shape: tuple) -> int:
    return shape[0] * shape[1]


@task
def bump(x: int) -> int:
    return x + 100


@task
def describe(payload: object) -> str:
    return repr(payload)


@flow(name="opaque")
def opaque_flow() -> list:
    values = source()
    bumped = bump.map(values)
    return [
        double(values),  # a lambda
        inner(3),  # a nested function
        area((2, 3)),  # a tuple literal
        describe({"values": values}),  # an output nested inside a literal
        describe(bumped[0]),  # one instance of a mapped task
    ]
