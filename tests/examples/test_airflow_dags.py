"""The example DAGs parse, run with ``dag.test()`` and give exactly the plain-Python results."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from examples.apps import ml_pipeline, svd, video

pytestmark = [
    pytest.mark.airflow,
    # Raised inside Airflow's in-process execution API on the first dag.test(); harmless.
    pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`"),
]

APP_DAGS = {
    # dag id: (file, app module, mapped task ids, final task id)
    "video_analytics": ("video_analytics.py", video, ("extract_features", "classify"), "aggregate"),
    "ml_pipeline": ("ml_pipeline.py", ml_pipeline, ("train_trial",), "pick_best"),
    "approx_svd": ("approx_svd.py", svd, ("block_product",), "combine"),
}


def expected_instances(dag_id: str, size: dict[str, Any]) -> int:
    """How many mapped instances the DAG's parallel stage must have at ``size``."""
    if dag_id == "video_analytics":
        return size["n_chunks"]
    if dag_id == "ml_pipeline":
        return size["n_alphas"] * size["n_gammas"]
    return size["n_blocks"]


def run_dag(dagbag: Any, dag_id: str) -> tuple[Any, dict[tuple[str, int], Any]]:
    """``dag.test()`` one DAG; return the run and its task instances by (task id, map index)."""
    dag_run = dagbag.dags[dag_id].test()
    instances = {(ti.task_id, ti.map_index): ti for ti in dag_run.get_task_instances()}
    return dag_run, instances


def test_dagbag_parses_the_four_dags(airflow_dagbag: Any) -> None:
    assert airflow_dagbag.import_errors == {}
    assert set(airflow_dagbag.dags) == {*APP_DAGS, "mixed_operators"}
    for dag in airflow_dagbag.dags.values():
        assert type(dag.timetable).__name__ == "NullTimetable"  # schedule=None: on trigger only


def test_parallel_stages_are_mapped_as_intended(airflow_dagbag: Any) -> None:
    from airflow.sdk.definitions.xcom_arg import XComArg

    video_dag = airflow_dagbag.dags["video_analytics"]
    expand = video_dag.get_task("extract_features").op_kwargs_expand_input.value
    assert expand["chunk"].operator.task_id == "split_video"  # scatter
    expand = video_dag.get_task("classify").op_kwargs_expand_input.value
    assert expand["features"].operator.task_id == "extract_features"

    trial = airflow_dagbag.dags["ml_pipeline"].get_task("train_trial")
    assert trial.op_kwargs_expand_input.value["hyperparams"].operator.task_id == "make_grid"
    reduced = trial.partial_kwargs["op_kwargs"]["reduced"]  # broadcast
    assert isinstance(reduced, XComArg) and reduced.operator.task_id == "pca"

    block = airflow_dagbag.dags["approx_svd"].get_task("block_product")
    assert block.op_kwargs_expand_input.value["block"].operator.task_id == "split_blocks"
    assert set(block.partial_kwargs["op_kwargs"]) == {"sketch_size", "sketch_seed"}


@pytest.mark.parametrize("dag_id", sorted(APP_DAGS))
def test_app_dag_matches_plain_run(
    dag_id: str,
    airflow_home: Path,
    airflow_dagbag: Any,
    airflow_dags_folder: Path,
    load_module: Callable[..., ModuleType],
) -> None:
    file_name, app, mapped, final = APP_DAGS[dag_id]
    size = load_module(airflow_dags_folder / file_name).SIZE
    dag_run, instances = run_dag(airflow_dagbag, dag_id)

    assert dag_run.state == "success"
    assert {ti.state for ti in instances.values()} == {"success"}
    per_task = Counter(task_id for task_id, map_index in instances if map_index >= 0)
    n = expected_instances(dag_id, size)
    assert n > 1
    assert per_task == dict.fromkeys(mapped, n)
    final_value = instances[(final, -1)].xcom_pull(task_ids=final)
    assert final_value == app.run(**size)


def test_mixed_operators_dag_runs(
    airflow_home: Path,
    airflow_dagbag: Any,
    airflow_dags_folder: Path,
    load_module: Callable[..., ModuleType],
) -> None:
    module = load_module(airflow_dags_folder / "mixed_operators.py")
    dag = airflow_dagbag.dags["mixed_operators"]
    kinds = {task.task_id: type(task).__name__ for task in dag.tasks}
    assert kinds["fetch_dataset"] == kinds["publish"] == "BashOperator"
    assert kinds["load_data"] == "PythonOperator"
    assert kinds["pca"] == kinds["summarize"] == "_PythonDecoratedOperator"
    assert dag.get_task("load_data").downstream_task_ids == {"pca"}
    assert dag.get_task("fetch_dataset").downstream_task_ids == {"load_data"}

    dag_run, instances = run_dag(airflow_dagbag, "mixed_operators")
    assert dag_run.state == "success"
    assert {ti.state for ti in instances.values()} == {"success"}
    size = module.SIZE
    data = ml_pipeline.load_data(size["n_samples"], size["n_features"], size["seed"])
    expected = module.summary_of(ml_pipeline.pca(data, size["n_components"]))
    assert instances[("summarize", -1)].xcom_pull(task_ids="summarize") == expected
    # The Bash task pushed its last line of output, rendered from the TaskFlow result.
    published = instances[("publish", -1)].xcom_pull(task_ids="publish")
    assert published == f"published {size['n_samples']} rows"
