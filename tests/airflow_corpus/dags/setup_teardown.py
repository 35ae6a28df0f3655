"""Setup and teardown tasks around Python work."""

from __future__ import annotations

from airflow.sdk import dag, task


@task
def create_cluster() -> str:
    return "cluster-1"


@task
def load_data(cluster: str) -> list[int]:
    return [3, 1, 2]


@task
def train(rows: list[int]) -> float:
    return sum(rows) / len(rows)


@task
def evaluate(score: float) -> str:
    return f"score={score:.2f}"


@task
def delete_cluster(cluster: str) -> None:
    print(f"deleting {cluster}")


@dag(dag_id="setup_teardown", schedule=None)
def setup_teardown():
    cluster = create_cluster()
    scores = evaluate(train(load_data(cluster)))
    done = delete_cluster(cluster)
    cluster >> scores >> done.as_teardown(setups=cluster)


setup_teardown()
