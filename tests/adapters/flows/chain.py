"""Plain calls in a chain; a task called twice; a dict output read by key; literal args."""

from __future__ import annotations

from prefect import flow, task


@task
def load(n: int) -> list[int]:
    return [i * 10 for i in range(n)]


@task
def settings() -> dict:
    return {"rows": [3, 4, 5], "scale": 2}


@task(retries=2, retry_delay_seconds=0)
def clean(rows: list[int], drop: int = 0) -> list[int]:
    return rows[drop:]


@task
def summarize(values: list[int], label: str) -> dict:
    return {"label": label, "sum": sum(values)}


@flow(name="chain")
def chain(n: int = 4) -> dict:
    data = load(n)
    cfg = settings()
    kept = clean(data, drop=1)
    clean(cfg["rows"])
    return summarize(kept, label="total")
