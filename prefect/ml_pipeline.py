"""ML pipeline as a Prefect flow: load -> PCA -> K trials in parallel -> pick the best.

``train_trial`` is mapped over the hyper-parameter grid with the reduced data ``unmapped``:
every trial gets the same data (broadcast). The tasks are thin wrappers of
``examples.apps.ml_pipeline``. Run it: ``python prefect/ml_pipeline.py [--size default]``.
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow, task, unmapped

from examples.apps import ml_pipeline

SMALL = ml_pipeline.SIZES["small"]


@task
def load_data(n_samples: int, n_features: int, seed: int) -> dict[str, Any]:
    """Load (here: synthesise) the raw data set."""
    return ml_pipeline.load_data(n_samples, n_features, seed)


@task
def pca(data: dict[str, Any], n_components: int) -> dict[str, Any]:
    """Reduce the data to its first principal components."""
    return ml_pipeline.pca(data, n_components)


@task
def make_grid(n_alphas: int, n_gammas: int, n_folds: int) -> list[dict[str, Any]]:
    """The hyper-parameter sets, one per trial."""
    return ml_pipeline.make_grid(n_alphas, n_gammas, n_folds)


@task
def train_trial(reduced: dict[str, Any], hyperparams: dict[str, Any]) -> dict[str, Any]:
    """Cross-validate one model on the shared reduced data."""
    return ml_pipeline.train_trial(reduced, hyperparams)


@task
def pick_best(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Gather the trials' scores and keep the best."""
    return ml_pipeline.pick_best(results)


@flow(name="ml-pipeline")
def ml_pipeline_flow(
    n_samples: int = SMALL["n_samples"],
    n_features: int = SMALL["n_features"],
    n_components: int = SMALL["n_components"],
    n_alphas: int = SMALL["n_alphas"],
    n_gammas: int = SMALL["n_gammas"],
    n_folds: int = SMALL["n_folds"],
    seed: int = SMALL["seed"],
) -> dict[str, Any]:
    """The pipeline; defaults are the small size, so ``ml_pipeline.run(**SMALL)`` matches."""
    data = load_data(n_samples, n_features, seed)
    reduced = pca(data, n_components)
    grid = make_grid(n_alphas, n_gammas, n_folds)
    results = train_trial.map(reduced=unmapped(reduced), hyperparams=grid)
    return pick_best(results)


if __name__ == "__main__":
    from examples.apps._cli import main

    sys.exit(
        main(
            "ml_pipeline", ml_pipeline.SIZES, ml_pipeline_flow, prog="python prefect/ml_pipeline.py"
        )
    )
