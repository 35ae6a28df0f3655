"""The identity pitfall: results equal (and identical) to values inside other arguments.

``count`` returns the small int 3 and ``device`` the interned string "gpu"; both also
appear inside the literal dict every ``run`` instance gets, and ``report`` is called once
with the literals 3 and "gpu" and once with the real results. ``run`` returns a dict that
holds "gpu" too, so later instances look like readers of earlier siblings to Prefect.
"""

from __future__ import annotations

from prefect import flow, task, unmapped


@task
def count() -> int:
    return 3


@task
def device() -> str:
    return "gpu"


@task
def make() -> list[int]:
    return [10, 20, 30, 40]


@task
def run(x: int, options: dict) -> dict:
    return {"device": options["device"], "value": x * options["threads"]}


@task
def report(n: int, label: str) -> str:
    return f"{label}:{n}"


@flow(name="spurious")
def spurious() -> list:
    n = count()
    d = device()
    xs = make()
    outs = run.map(xs, unmapped({"device": "gpu", "threads": 3}))
    return [outs.result(), report(3, "gpu"), report(n, d)]
