"""multiple_outputs: cfg["key"] downstream reads one key of a dict output.

(Airflow refuses to map over a custom key, so there is no expand here.)
"""

from __future__ import annotations

from airflow.sdk import dag, task


@task(multiple_outputs=True)
def config() -> dict:
    return {"name": "x", "sizes": [1, 2, 3]}


@task
def greet(name: str, whole: dict) -> str:
    return f"{name} {len(whole)}"


@dag(dag_id="multiple_outputs", schedule=None)
def multiple_outputs() -> None:
    cfg = config()
    greet(cfg["name"], whole=cfg)


multiple_outputs()
