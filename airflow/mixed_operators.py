"""A DAG that mixes operator kinds: Bash (opaque), a classic PythonOperator and TaskFlow tasks.

``fetch_dataset`` (Bash) >> ``load_data`` (PythonOperator with ``op_kwargs``) -> ``pca``
(TaskFlow, reads the PythonOperator's XCom) -> ``summarize`` (TaskFlow) >> ``publish`` (Bash,
reads the summary through a template). The Bash tasks are what a rewrite must leave in
Airflow untouched, with their dependencies; the Python ones are candidates for fusion.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import dag, task

from examples.apps import ml_pipeline

# Small enough for tests.
SIZE: dict[str, Any] = dict(ml_pipeline.SIZES["small"])


def load_data(n_samples: int, n_features: int, seed: int) -> dict[str, Any]:
    """The PythonOperator's callable: load (here: synthesise) the raw data set."""
    return ml_pipeline.load_data(n_samples, n_features, seed)


@task(multiple_outputs=False)
def pca(data: dict[str, Any], n_components: int) -> dict[str, Any]:
    """Reduce the data to its first principal components."""
    return ml_pipeline.pca(data, n_components)


@task(multiple_outputs=False)
def summarize(reduced: dict[str, Any]) -> dict[str, Any]:
    """A small report of the reduction: the input of the publishing step."""
    return summary_of(reduced)


def summary_of(reduced: dict[str, Any]) -> dict[str, Any]:
    """Rows, components and explained variance of a reduced data set."""
    ratio = reduced["explained_variance_ratio"]
    return {
        "n_samples": len(reduced["X"]),
        "n_components": len(ratio),
        "explained_variance": sum(ratio),
        "positives": sum(1 for label in reduced["y"] if label > 0),
    }


@dag(
    dag_id="mixed_operators",
    schedule=None,
    catchup=False,
    tags=["wisefuse-example"],
    doc_md=__doc__,
)
def mixed_operators() -> None:
    fetch = BashOperator(task_id="fetch_dataset", bash_command="echo fetching dataset")
    load = PythonOperator(
        task_id="load_data",
        python_callable=load_data,
        op_kwargs={
            "n_samples": SIZE["n_samples"],
            "n_features": SIZE["n_features"],
            "seed": SIZE["seed"],
        },
    )
    reduced = pca(load.output, n_components=SIZE["n_components"])
    summary = summarize(reduced)
    publish = BashOperator(
        task_id="publish",
        bash_command=("echo published {{ ti.xcom_pull(task_ids='summarize')['n_samples'] }} rows"),
    )
    fetch >> load
    summary >> publish


mixed_operators()
