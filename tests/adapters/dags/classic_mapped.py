"""Classic PythonOperator mapping: .partial(python_callable=...).expand(op_kwargs=/op_args=)."""

from __future__ import annotations

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG


def scale(x: int, factor: int = 1) -> int:
    return x * factor


with DAG(dag_id="classic_mapped", schedule=None):
    PythonOperator.partial(task_id="by_kwargs", python_callable=scale).expand(
        op_kwargs=[{"x": 1, "factor": 2}, {"x": 3, "factor": 4}]
    )
    PythonOperator.partial(
        task_id="by_args", python_callable=scale, op_kwargs={"factor": 10}
    ).expand(op_args=[[1], [2], [3]])
