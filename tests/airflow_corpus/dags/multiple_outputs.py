"""multiple_outputs: a dict unrolled into XComs, read key by key."""

from __future__ import annotations

from airflow.sdk import dag, task


@task(multiple_outputs=True)
def split(text: str):
    words = text.split()
    return {"words": words, "count": len(words)}


@task
def stats(rows: list[int]) -> dict[str, int]:
    return {"low": min(rows), "high": max(rows)}


@task
def spread(low: int, high: int) -> int:
    return high - low


@task
def describe(words: list[str], count: int, spread: int) -> str:
    return f"{count} words ({', '.join(words)}), spread {spread}"


@dag(dag_id="multiple_outputs", schedule=None)
def multiple_outputs():
    parts = split("the quick brown fox")
    s = stats([4, 9, 1])
    describe(parts["words"], parts["count"], spread(s["low"], s["high"]))


multiple_outputs()
