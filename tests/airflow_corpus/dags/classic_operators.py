"""Classic operators mixing XCom with Python tasks."""

from __future__ import annotations

from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, task


def numbers(count: int) -> list[int]:
    return list(range(1, count + 1))


def total(values: list[int]) -> int:
    return sum(values)


def pull_total(ti) -> int:
    return ti.xcom_pull(task_ids="total") * 10


@task
def word_count(text: str) -> int:
    return len(text.split())


with DAG(dag_id="classic_operators", schedule=None, tags=["corpus"]) as dag:
    begin = EmptyOperator(task_id="begin")
    make = PythonOperator(task_id="numbers", python_callable=numbers, op_kwargs={"count": 5})
    add = PythonOperator(task_id="total", python_callable=total, op_args=[make.output])
    pulled = PythonOperator(task_id="pull_total", python_callable=pull_total)
    echo = BashOperator(
        task_id="echo", bash_command="echo 'sum is {{ ti.xcom_pull(task_ids=\"total\") }}'"
    )
    counted = word_count(echo.output)
    begin >> make
    add >> [pulled, echo]
