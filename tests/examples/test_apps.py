"""The three example apps in plain Python: deterministic, XCom-safe values, correct numbers."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from examples.apps import _cli, ml_pipeline, svd, video

APPS = {"video": video, "ml_pipeline": ml_pipeline, "svd": svd}


def assert_json_data(value: Any, where: str = "value") -> None:
    """Only what survives Airflow XCom unchanged: str-keyed dicts, lists, str, int, finite
    float, bool, None (no numpy scalars or arrays, tuples, bytes, NaN or inf)."""
    if value is None or type(value) in (str, int, bool):
        return
    if type(value) is float:
        assert math.isfinite(value), f"{where} is {value}"
        return
    if type(value) is list:
        for i, item in enumerate(value):
            assert_json_data(item, f"{where}[{i}]")
        return
    if type(value) is dict:
        for key, item in value.items():
            assert type(key) is str, f"{where} has key {key!r} of type {type(key).__name__}"
            assert_json_data(item, f"{where}[{key!r}]")
        return
    raise AssertionError(f"{where} has type {type(value).__name__}")


def video_stages(size: dict[str, Any]) -> list[Any]:
    chunks = video.split_video(**size)
    features = [video.extract_features(c) for c in chunks]
    labels = [video.classify(f) for f in features]
    return [chunks, features, labels, video.aggregate(labels)]


def ml_stages(size: dict[str, Any]) -> list[Any]:
    data = ml_pipeline.load_data(size["n_samples"], size["n_features"], size["seed"])
    reduced = ml_pipeline.pca(data, size["n_components"])
    grid = ml_pipeline.make_grid(size["n_alphas"], size["n_gammas"], size["n_folds"])
    results = [ml_pipeline.train_trial(reduced, h) for h in grid]
    return [data, reduced, grid, results, ml_pipeline.pick_best(results)]


def svd_stages(size: dict[str, Any]) -> list[Any]:
    matrix = svd.make_matrix(size["n_rows"], size["n_cols"], size["rank"], size["seed"])
    blocks = svd.split_blocks(matrix, size["n_blocks"])
    products = [
        svd.block_product(b, size["k"] + size["oversample"], size["seed"] + 1) for b in blocks
    ]
    return [matrix, blocks, products, svd.combine(products, size["k"])]


STAGES: dict[str, Callable[[dict[str, Any]], list[Any]]] = {
    "video": video_stages,
    "ml_pipeline": ml_stages,
    "svd": svd_stages,
}


@pytest.mark.parametrize("name", sorted(APPS))
def test_every_stage_output_is_json_data(name: str) -> None:
    stages = STAGES[name](APPS[name].SIZES["small"])
    for i, value in enumerate(stages):
        assert_json_data(value, f"{name} stage {i}")
        assert json.loads(json.dumps(value, allow_nan=False)) == value


@pytest.mark.parametrize("name", sorted(APPS))
def test_run_is_the_stages_in_order_and_deterministic(name: str) -> None:
    app, size = APPS[name], APPS[name].SIZES["small"]
    first = app.run(**size)
    assert first == STAGES[name](size)[-1]
    assert app.run(**size) == first
    assert app.run(**{**size, "seed": size["seed"] + 1}) != first


@pytest.mark.parametrize("name", sorted(APPS))
def test_small_size_is_fast(name: str) -> None:
    app = APPS[name]
    start = time.perf_counter()
    app.run(**app.SIZES["small"])
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize("name", sorted(APPS))
def test_cli_main_prints_result_and_time(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    app = APPS[name]
    assert _cli.main(name, app.SIZES, app.run, argv=["--size", "small"]) == 0
    out = capsys.readouterr().out
    body, _, last = out.rstrip("\n").rpartition("\n")
    assert json.loads(body) == app.run(**app.SIZES["small"])
    assert last.startswith(f"{name} size=small") and last.endswith(" s")


def test_module_entry_point_runs(repo_root: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "examples.apps.svd", "--size", "small", "--seed", "9"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    body, _, _ = proc.stdout.rstrip("\n").rpartition("\n")
    assert json.loads(body) == svd.run(**{**svd.SIZES["small"], "seed": 9})


# --- video ----------------------------------------------------------------------------------

SKEW_SIZE = {"n_chunks": 8, "frames_per_chunk": 6, "height": 24, "width": 32, "seed": 7}


@pytest.fixture(scope="module")
def skew_chunks() -> tuple[list[dict[str, Any]], list[int]]:
    """Eight small chunks and the solver iterations each one costs."""
    chunks = video.split_video(**SKEW_SIZE)
    return chunks, [video.extract_features(c)["iterations"] for c in chunks]


def test_video_chunks_differ_and_work_is_skewed(
    skew_chunks: tuple[list[dict[str, Any]], list[int]],
) -> None:
    chunks, work = skew_chunks
    assert [c["index"] for c in chunks] == list(range(8))
    assert len({json.dumps(c["frames"]) for c in chunks}) == 8
    frames = np.asarray(chunks[0]["frames"])
    assert frames.shape == (6, 24, 32) and frames.min() >= 0 and frames.max() <= 255
    assert max(work) / min(work) >= 5, work
    # The busiest chunk (most activity) is the one that costs most.
    activity = [c["activity"] for c in chunks]
    assert int(np.argmax(work)) == int(np.argmax(activity))


def test_video_skew_shows_in_wall_time(
    skew_chunks: tuple[list[dict[str, Any]], list[int]],
) -> None:
    chunks, work = skew_chunks
    heavy, light = chunks[int(np.argmax(work))], chunks[int(np.argmin(work))]

    def best_time(chunk: dict[str, Any]) -> float:
        times = []
        for _ in range(2):
            start = time.perf_counter()
            video.extract_features(chunk)
            times.append(time.perf_counter() - start)
        return min(times)

    assert best_time(heavy) > 2.5 * best_time(light)


def test_video_aggregate_ignores_input_order() -> None:
    chunks = video.split_video(**video.SIZES["small"])
    labels = [video.classify(video.extract_features(c)) for c in chunks]
    summary = video.aggregate(labels)
    assert video.aggregate(labels[::-1]) == summary
    assert summary["n_chunks"] == len(chunks)
    assert sum(summary["counts"].values()) == len(chunks)
    assert set(summary["labels"]) <= set(video.CLASSES)
    assert summary["counts"][summary["dominant"]] == max(summary["counts"].values())
    for result in labels:
        assert math.isclose(sum(result["probs"]), 1.0)


# --- ML pipeline ----------------------------------------------------------------------------


def test_ml_pca_and_grid() -> None:
    size = ml_pipeline.SIZES["small"]
    data = ml_pipeline.load_data(size["n_samples"], size["n_features"], size["seed"])
    reduced = ml_pipeline.pca(data, size["n_components"])
    x = np.asarray(reduced["X"])
    assert x.shape == (size["n_samples"], size["n_components"])
    ratio = reduced["explained_variance_ratio"]
    assert ratio == sorted(ratio, reverse=True) and 0.9 < sum(ratio) <= 1.0
    # Principal components are uncorrelated.
    cov = np.cov(x, rowvar=False)
    assert np.allclose(cov - np.diag(np.diag(cov)), 0.0, atol=1e-9)
    grid = ml_pipeline.make_grid(3, 4, 5)
    assert [h["trial"] for h in grid] == list(range(12))
    assert len({(h["alpha"], h["gamma"]) for h in grid}) == 12


def test_ml_trials_learn_and_best_is_the_top_score() -> None:
    size = ml_pipeline.SIZES["small"]
    *_, results, best = ml_stages(size)
    scores = [r["score"] for r in results]
    assert best["best_score"] == max(scores) > 0.75
    assert sorted(best["ranking"]) == list(range(len(results)))
    assert best["best_params"] == results[best["best_trial"]]["params"]
    assert ml_pipeline.pick_best(results[::-1]) == best


# --- SVD ------------------------------------------------------------------------------------


def test_svd_matches_exact_singular_values() -> None:
    size = svd.SIZES["small"]
    result = svd.run(**size)
    a = svd.dense(svd.make_matrix(size["n_rows"], size["n_cols"], size["rank"], size["seed"]))
    exact = np.linalg.svd(a, compute_uv=False)[: size["k"]]
    approx = np.asarray(result["singular_values"])
    assert approx.shape == (size["k"],)
    np.testing.assert_allclose(approx, exact, rtol=5e-3)
    # The gaps between exact values are far wider than the tolerance: a wrong merge shows.
    assert np.min(-np.diff(exact) / exact[1:]) > 0.05


@pytest.mark.parametrize("n_blocks", [1, 3, 7])
def test_svd_does_not_depend_on_the_split(n_blocks: int) -> None:
    size = svd.SIZES["small"]
    matrix = svd.make_matrix(size["n_rows"], size["n_cols"], size["rank"], size["seed"])
    blocks = svd.split_blocks(matrix, n_blocks)
    assert np.array_equal(np.vstack([svd.load_block(b) for b in blocks]), svd.dense(matrix))
    reference = svd.run(**size)["singular_values"]
    values = svd.run(**{**size, "n_blocks": n_blocks})["singular_values"]
    np.testing.assert_allclose(values, reference, rtol=1e-9)


def test_svd_combine_ignores_input_order() -> None:
    size = svd.SIZES["small"]
    *_, products, result = svd_stages(size)
    assert svd.combine(products[::-1], size["k"]) == result
