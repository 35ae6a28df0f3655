"""DAG params and templated fields next to plain Python tasks."""

from __future__ import annotations

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import Param, dag, task


@task
def make_rows(n: int) -> list[int]:
    return list(range(n))


@task
def scale(rows: list[int], factor: int) -> list[int]:
    return [r * factor for r in rows]


@task
def with_params(rows: list[int], **context) -> int:
    return len(rows) * context["params"]["factor"]


@task
def label(day: str, rows: list[int]) -> str:
    return f"{len(rows)} rows (run on a {len(day)}-character date)"


@dag(
    dag_id="params_templates",
    schedule=None,
    params={"factor": Param(3, type="integer", minimum=1), "name": "orders"},
)
def params_templates():
    rows = scale(make_rows(4), 2)
    with_params(rows)
    label("{{ ds }}", rows)
    rows >> BashOperator(
        task_id="announce",
        bash_command="echo {{ params.name }}: {{ ti.xcom_pull(task_ids='scale') | length }}",
    )
    rows >> BashOperator(task_id="after", bash_command="echo done")


params_templates()
