"""ML pipeline: load data, reduce it with PCA, tune a model with K parallel trials, pick the best.

The shape of the WiseFuse paper's ML workload: two stages in series (``load_data`` ->
``pca``), then K hyper-parameter trials in parallel that all read the *same* reduced data (a
broadcast edge: a bundle of trials could download it once), then a gather (``pick_best``).
Each trial is an RBF kernel ridge classifier scored by k-fold cross-validation, so a trial
costs a few Cholesky factorisations of an n x n kernel: real, CPU-bound, deterministic work.
Values between stages are JSON data (see ``examples.apps``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.linalg

SIZES: dict[str, dict[str, Any]] = {
    # Tests, DAGs and flows: a full run well under a second.
    "small": {
        "n_samples": 240,
        "n_features": 20,
        "n_components": 4,
        "n_alphas": 2,
        "n_gammas": 2,
        "n_folds": 3,
        "seed": 11,
    },
    # A few seconds on one core; about 0.4 MB of reduced data broadcast to each trial.
    "default": {
        "n_samples": 1800,
        "n_features": 40,
        "n_components": 8,
        "n_alphas": 3,
        "n_gammas": 4,
        "n_folds": 5,
        "seed": 11,
    },
}

LATENT_DIM = 3
NOISE = 0.3


def load_data(n_samples: int, n_features: int, seed: int) -> dict[str, Any]:
    """A synthetic binary classification set: a nonlinear boundary in a 3-d latent space,
    embedded in ``n_features`` noisy dimensions. Returns ``{"X": rows, "y": labels in +-1}``.
    """
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n_samples, LATENT_DIM))
    y = np.where(np.sin(2.0 * latent[:, 0]) + latent[:, 1] * latent[:, 2] > 0.0, 1, -1)
    mixing = rng.normal(size=(LATENT_DIM, n_features))
    x = latent @ mixing + NOISE * rng.normal(size=(n_samples, n_features))
    return {"X": x.tolist(), "y": y.tolist()}


def pca(data: dict[str, Any], n_components: int) -> dict[str, Any]:
    """Project the data on its first principal components (sign fixed: deterministic).

    Returns ``{"X": reduced rows, "y", "explained_variance_ratio"}``.
    """
    x = np.asarray(data["X"], dtype=float)
    centred = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    components = vt[:n_components]
    signs = np.sign(components[np.arange(n_components), np.argmax(np.abs(components), axis=1)])
    components = components * signs[:, None]
    variance = s**2
    return {
        "X": (centred @ components.T).tolist(),
        "y": list(data["y"]),
        "explained_variance_ratio": (variance[:n_components] / variance.sum()).tolist(),
    }


def make_grid(n_alphas: int, n_gammas: int, n_folds: int) -> list[dict[str, Any]]:
    """The K = n_alphas * n_gammas hyper-parameter sets, log-spaced, one dict per trial."""
    alphas = np.logspace(-3, 0, n_alphas) if n_alphas > 1 else np.array([0.1])
    gammas = np.logspace(-2, 1, n_gammas) if n_gammas > 1 else np.array([0.3])
    return [
        {"trial": i * len(gammas) + j, "alpha": float(a), "gamma": float(g), "n_folds": n_folds}
        for i, a in enumerate(alphas)
        for j, g in enumerate(gammas)
    ]


def train_trial(reduced: dict[str, Any], hyperparams: dict[str, Any]) -> dict[str, Any]:
    """Cross-validate one RBF kernel ridge classifier: ``{"trial", "params", "score", ...}``.

    (Not ``params``: Airflow reserves that name for the task context and refuses to map it.)
    """
    x = np.asarray(reduced["X"], dtype=float)
    y = np.asarray(reduced["y"], dtype=float)
    n_folds = int(hyperparams["n_folds"])
    folds = np.arange(x.shape[0]) % n_folds  # rows are already in random order
    accuracies = []
    for fold in range(n_folds):
        train, test = folds != fold, folds == fold
        kernel = _rbf(x[train], x[train], hyperparams["gamma"])
        kernel[np.diag_indices_from(kernel)] += hyperparams["alpha"] * train.sum()
        coef = scipy.linalg.cho_solve(scipy.linalg.cho_factor(kernel), y[train])
        predicted = np.where(_rbf(x[test], x[train], hyperparams["gamma"]) @ coef >= 0.0, 1.0, -1.0)
        accuracies.append(float(np.mean(predicted == y[test])))
    return {
        "trial": int(hyperparams["trial"]),
        "params": dict(hyperparams),
        "score": float(np.mean(accuracies)),
        "fold_scores": accuracies,
    }


def _rbf(a: np.ndarray, b: np.ndarray, gamma: float) -> np.ndarray:
    """exp(-gamma * |a_i - b_j|^2), with distances clipped at 0 against rounding."""
    sq = (a**2).sum(axis=1)[:, None] + (b**2).sum(axis=1)[None, :] - 2.0 * (a @ b.T)
    return np.exp(-gamma * np.maximum(sq, 0.0))


def pick_best(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The best trial (ties: lowest trial number) and the full ranking."""
    ranked = sorted(results, key=lambda r: (-r["score"], r["trial"]))
    best = ranked[0]
    return {
        "best_trial": best["trial"],
        "best_params": best["params"],
        "best_score": best["score"],
        "ranking": [r["trial"] for r in ranked],
        "scores": [r["score"] for r in sorted(results, key=lambda r: r["trial"])],
    }


def run(
    n_samples: int,
    n_features: int,
    n_components: int,
    n_alphas: int,
    n_gammas: int,
    n_folds: int,
    seed: int,
) -> dict[str, Any]:
    """The whole pipeline in plain Python, stage by stage as the DAG and the flow run it."""
    data = load_data(n_samples, n_features, seed)
    reduced = pca(data, n_components)
    grid = make_grid(n_alphas, n_gammas, n_folds)
    results = [train_trial(reduced, hyperparams) for hyperparams in grid]
    return pick_best(results)


if __name__ == "__main__":
    from examples.apps._cli import main

    raise SystemExit(main("ml_pipeline", SIZES, run))
