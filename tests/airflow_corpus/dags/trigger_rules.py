"""Trigger rules: a clean-up that always runs, a join after a skipped branch."""

from __future__ import annotations

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import dag, task


@task
def fetch() -> list[int]:
    return [1, 2, 3]


@task
def transform(rows: list[int]) -> list[int]:
    return [r * 3 for r in rows]


@task.branch
def route(rows: list[int]) -> str:
    return "fast_path"


@task
def fast_path() -> str:
    return "fast"


@task
def slow_path() -> str:
    return "slow"


@task(trigger_rule="none_failed_min_one_success")
def join() -> str:
    return "joined"


@task(trigger_rule="all_done")
def cleanup(rows: list[int]) -> int:
    return len(rows)


@dag(dag_id="trigger_rules", schedule=None)
def trigger_rules():
    rows = transform(fetch())
    fast, slow = fast_path(), slow_path()
    route(rows) >> [fast, slow] >> join()
    check = BashOperator(task_id="check", bash_command="echo checked")
    rows >> check >> cleanup(rows)


trigger_rules()
