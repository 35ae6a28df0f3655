"""The live deployment itself: a DAG file put into its folder is parsed, runs under the
scheduler, and its states, XComs, task logs and import errors can be read."""

from __future__ import annotations

import pytest

from .airflow_live import AirflowLive, LiveAirflowError

HELLO = """
from airflow.sdk import dag, task


@task
def numbers():
    return [1, 2, 3]


@task
def double(x):
    print("doubling", x)
    return 2 * x


@task
def total(values):
    return sum(values)


@dag(dag_id="live_hello", schedule=None)
def live_hello():
    total(double.expand(x=numbers()))


live_hello()
"""


def test_a_dag_runs_under_the_scheduler(airflow_live: AirflowLive) -> None:
    path = airflow_live.put("deployment/live_hello.py", HELLO)
    assert airflow_live.repo_free(path)
    airflow_live.wait_parsed("live_hello", files=[path])
    run = airflow_live.trigger("live_hello")
    assert airflow_live.wait_runs([("live_hello", run)], timeout_s=180) == {
        ("live_hello", run): "success"
    }
    tis = airflow_live.task_instances("live_hello", run)
    assert sorted(tis) == [
        ("double", 0),
        ("double", 1),
        ("double", 2),
        ("numbers", -1),
        ("total", -1),
    ]
    assert all(ti.state == "success" and ti.duration_s is not None for ti in tis.values())
    assert airflow_live.xcom("live_hello", run, "total") == 12
    assert airflow_live.xcom("live_hello", run, "double", map_index=2) == 6
    assert "doubling 3" in airflow_live.task_log("live_hello", run, "double", map_index=2)


def test_an_import_error_is_reported_with_its_trace(airflow_live: AirflowLive) -> None:
    path = airflow_live.put(
        "deployment/live_broken.py", "from airflow.sdk import dag\nimport not_a_module_here\n"
    )
    with pytest.raises(LiveAirflowError, match="No module named 'not_a_module_here'"):
        airflow_live.wait_parsed("live_broken", files=[path], timeout_s=120)
    path.unlink()


WARM = """
import os

from airflow.sdk import dag, task


@task.wisefuse_lambda(memory_mb=256)
def square(x: int) -> dict:
    names = ("AIRFLOW_HOME", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "WISEFUSE_HOME")
    return {"value": x * x, "pid": os.getpid(), "env": {n: os.environ.get(n) for n in names}}


@dag(dag_id="live_warm", schedule=None)
def live_warm():
    square(7)


live_warm()
"""


def test_task_processes_in_a_row_reuse_one_warm_environment(airflow_live: AirflowLive) -> None:
    """Each task instance is its own process under the LocalExecutor: the unit's execution
    environment lives in the local Lambda service, so the second run's task finds it warm
    (the same worker process) where every task used to start cold."""
    path = airflow_live.put("deployment/live_warm.py", WARM)
    airflow_live.wait_parsed("live_warm", files=[path])
    results, logs = [], []
    for _ in range(2):
        run = airflow_live.trigger("live_warm")
        assert airflow_live.wait_runs([("live_warm", run)], timeout_s=180) == {
            ("live_warm", run): "success"
        }, airflow_live.task_log("live_warm", run, "square")
        results.append(airflow_live.xcom("live_warm", run, "square"))
        logs.append(airflow_live.task_log("live_warm", run, "square"))
    assert [r["value"] for r in results] == [49, 49]
    assert ": cold," in logs[0] and ": warm," in logs[1], logs[1]
    assert results[0]["pid"] == results[1]["pid"]  # one execution environment, reused
    # the function sees its configuration, nothing of the task process's environment
    assert results[1]["env"] == dict.fromkeys(results[1]["env"])
