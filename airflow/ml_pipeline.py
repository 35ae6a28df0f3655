"""ML pipeline as an Airflow DAG: load -> PCA -> K trials in parallel -> pick the best.

``train_trial`` is mapped over the hyper-parameter grid with the reduced data fixed by
``.partial()``: every trial reads the same data (broadcast). The task functions are thin
wrappers of ``examples.apps.ml_pipeline``: that module is the user's code.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from airflow.sdk import dag, task

from examples.apps import ml_pipeline

# Small enough for tests (`wisefuse demo` sets WISEFUSE_EXAMPLE_SIZE=default); ``ml_pipeline.run(**SIZE)``
# gives the same result.
SIZE: dict[str, Any] = dict(ml_pipeline.SIZES[os.environ.get("WISEFUSE_EXAMPLE_SIZE", "small")])


@task(multiple_outputs=False)
def load_data(n_samples: int, n_features: int, seed: int) -> dict[str, Any]:
    """Load (here: synthesise) the raw data set."""
    return ml_pipeline.load_data(n_samples, n_features, seed)


@task(multiple_outputs=False)
def pca(data: dict[str, Any], n_components: int) -> dict[str, Any]:
    """Reduce the data to its first principal components."""
    return ml_pipeline.pca(data, n_components)


@task
def make_grid(n_alphas: int, n_gammas: int, n_folds: int) -> list[dict[str, Any]]:
    """The hyper-parameter sets, one per trial."""
    return ml_pipeline.make_grid(n_alphas, n_gammas, n_folds)


@task(multiple_outputs=False)
def train_trial(reduced: dict[str, Any], hyperparams: dict[str, Any]) -> dict[str, Any]:
    """Cross-validate one model on the shared reduced data."""
    return ml_pipeline.train_trial(reduced, hyperparams)


@task(multiple_outputs=False)
def pick_best(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Gather the trials' scores and keep the best."""
    return ml_pipeline.pick_best(list(results))


@dag(dag_id="ml_pipeline", schedule=None, catchup=False, tags=["wisefuse-example"], doc_md=__doc__)
def ml_pipeline_dag() -> None:
    data = load_data(n_samples=SIZE["n_samples"], n_features=SIZE["n_features"], seed=SIZE["seed"])
    reduced = pca(data, n_components=SIZE["n_components"])
    grid = make_grid(n_alphas=SIZE["n_alphas"], n_gammas=SIZE["n_gammas"], n_folds=SIZE["n_folds"])
    results = train_trial.partial(reduced=reduced).expand(hyperparams=grid)
    pick_best(results)


ml_pipeline_dag()
