"""Classic PythonOperators: op_args, op_kwargs, .output, and a `>>` without data."""

from __future__ import annotations

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG


def add(a: int, b: int, c: int = 0) -> int:
    return a + b + c


def report(total: int, label: str) -> str:
    return f"{label}: {total}"


def cleanup() -> None:
    return None


with DAG(dag_id="python_operator", schedule=None):
    first = PythonOperator(
        task_id="add", python_callable=add, op_args=[1, 2], op_kwargs={"c": 3}, pool="small"
    )
    second = PythonOperator(
        task_id="report", python_callable=report, op_args=[first.output], op_kwargs={"label": "sum"}
    )
    third = PythonOperator(task_id="cleanup", python_callable=cleanup)
    second >> third
