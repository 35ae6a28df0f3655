"""The long tail of a Prefect flow file (tests/runtime/test_shim.py imports it under the
framework shim): the flow runs at import as plain Python, and the assert below is what
Prefect gives for it (futures, map with unmapped / allow_failure / quote, subflows,
with_options, return_state)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from prefect import Flow, Task, allow_failure, flow, get_run_logger, tags, task, unmapped
from prefect.cache_policies import INPUTS, TASK_SOURCE
from prefect.context import TaskRunContext
from prefect.futures import as_completed, wait
from prefect.logging import get_logger
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff, task_input_hash
from prefect.utilities.annotations import quote

log = get_logger("flows")
assert TaskRunContext.get() is None


@task(
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    cache_policy=INPUTS + TASK_SOURCE,
    cache_expiration=timedelta(hours=1),
    cache_key_fn=task_input_hash,
    tags=["a"],
    task_run_name="sq-{x}",
    log_prints=True,
)
def square(x: int) -> int:
    get_run_logger().info("x=%s", x)
    return x * x


@task
def add(a: int, b: int = 0) -> int:
    return a + b


@task
def total(values: list[int]) -> int:
    return sum(values)


@task
def fail() -> int:
    raise ValueError("no")


@task
async def slow(x: int) -> int:
    await asyncio.sleep(0)
    return x


@flow(task_runner=ThreadPoolTaskRunner(max_workers=4), log_prints=True, retries=1)
def inner(xs: list[int]) -> int:
    return total(square.map(xs))


@flow(name="tail")
def tail(n: int = 4) -> dict:
    xs = list(range(n))
    futs = square.map(xs)
    shifted = add.map(futs, b=unmapped(10))
    s = add.submit(futs[0], b=5)
    bad = fail.submit()
    wait([s, bad])
    done = [f.result() for f in as_completed(futs)]
    tolerated = add.map([1, 2], b=allow_failure(0))
    with tags("x"):
        q = total(quote([1, 2, 3]))
    return {
        "shifted": [f.result() for f in shifted],
        "sum": s.result(),
        "bad": bad.state.is_failed(),
        "done": sorted(done),
        "inner": inner(xs),
        "tolerated": tolerated.result(),
        "q": q,
        "with_options": square.with_options(name="s2")(3),
        "state": add(1, return_state=True).result(),
    }


RESULT = tail()
assert RESULT == {
    "shifted": [10, 11, 14, 19],
    "sum": 5,
    "bad": True,
    "done": [0, 1, 4, 9],
    "inner": 14,
    "tolerated": [1, 2],
    "q": 6,
    "with_options": 9,
    "state": 1,
}, RESULT
assert isinstance(tail, Flow) and isinstance(square, Task)

if __name__ == "__main__":
    tail.serve(name="x")
