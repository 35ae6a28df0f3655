"""Operators that stay in Airflow: Bash, Empty, a sensor, branching, short-circuit, @task.bash."""

from __future__ import annotations

import datetime

from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import BranchPythonOperator, ShortCircuitOperator
from airflow.providers.standard.sensors.time_delta import TimeDeltaSensor
from airflow.sdk import DAG, task


def pick() -> str:
    return "python_step"


def keep_going() -> bool:
    return True


@task
def python_step() -> int:
    return 1


@task.branch
def choose() -> str:
    return "python_step"


@task.bash
def shell() -> str:
    return "echo hi"


with DAG(dag_id="operators", schedule=None):
    bash = BashOperator(task_id="bash", bash_command="echo {{ ds }}")
    empty = EmptyOperator(task_id="empty")
    wait = TimeDeltaSensor(task_id="wait", delta=datetime.timedelta(seconds=1))
    branch = BranchPythonOperator(task_id="branch", python_callable=pick)
    gate = ShortCircuitOperator(task_id="gate", python_callable=keep_going)
    step = python_step()
    bash >> empty >> wait >> branch >> gate >> step >> choose() >> shell()
    mapped_bash = BashOperator.partial(task_id="mapped_bash").expand(
        bash_command=["echo 1", "echo 2"]
    )
    odd_bash = BashOperator.partial(task_id="odd_bash", bash_command="env").expand(
        env=[{"DAY": datetime.date(2024, 1, 1)}]
    )
