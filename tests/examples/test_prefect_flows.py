"""The example flows run as real Prefect flow runs and return exactly the plain-Python results."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any
from uuid import UUID

import pytest

from examples.apps import ml_pipeline, svd, video

pytestmark = pytest.mark.prefect

FLOWS = {
    # file: (flow function name, app module, {task name: runs at the small size})
    "video_analytics.py": (
        "video_analytics",
        video,
        lambda s: {
            "split_video": 1,
            "extract_features": s["n_chunks"],
            "classify": s["n_chunks"],
            "aggregate": 1,
        },
    ),
    "ml_pipeline.py": (
        "ml_pipeline_flow",
        ml_pipeline,
        lambda s: {
            "load_data": 1,
            "pca": 1,
            "make_grid": 1,
            "train_trial": s["n_alphas"] * s["n_gammas"],
            "pick_best": 1,
        },
    ),
    "approx_svd.py": (
        "approx_svd",
        svd,
        lambda s: {
            "make_matrix": 1,
            "split_blocks": 1,
            "block_product": s["n_blocks"],
            "combine": 1,
        },
    ),
}


def task_runs_per_task(flow_run_id: UUID) -> Counter[str]:
    """How many task runs each task function had in one flow run (read from the API)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )

    # Prefect records task-run states in the background: wait until the API has them all
    deadline = time.monotonic() + 60
    runs = asyncio.run(read())
    while not all(run.state.is_completed() for run in runs) and time.monotonic() < deadline:
        time.sleep(0.5)
        runs = asyncio.run(read())
    assert all(run.state.is_completed() for run in runs), [(r.name, r.state.type) for r in runs]
    return Counter(run.name.rsplit("-", 1)[0] for run in runs)


@pytest.mark.parametrize("file_name", sorted(FLOWS))
def test_flow_matches_plain_run(
    file_name: str,
    prefect_env: dict[str, str],
    prefect_flows_folder: Path,
    load_module: Callable[..., ModuleType],
) -> None:
    flow_name, app, expected_runs = FLOWS[file_name]
    flow = getattr(load_module(prefect_flows_folder / file_name), flow_name)
    size = app.SIZES["small"]

    state = flow(**size, return_state=True)
    assert state.is_completed()
    assert state.result() == app.run(**size)
    assert task_runs_per_task(state.state_details.flow_run_id) == expected_runs(size)


def test_flow_defaults_are_the_small_size(
    prefect_env: dict[str, str],
    prefect_flows_folder: Path,
    load_module: Callable[..., ModuleType],
) -> None:
    flow = load_module(prefect_flows_folder / "approx_svd.py").approx_svd
    assert flow() == svd.run(**svd.SIZES["small"])
    other = {**svd.SIZES["small"], "seed": 3, "n_blocks": 3}
    assert flow(**other) == svd.run(**other)
