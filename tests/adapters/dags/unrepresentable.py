"""Python tasks that must stay opaque: context, Jinja, non-JSON literals, lambdas, nesting..."""

from __future__ import annotations

import datetime

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import dag, task


def with_ds(ds: str) -> str:
    return ds


def plain(x: object) -> object:
    return x


def varargs(*values: int) -> int:
    return sum(values)


def rebound(x: int) -> int:
    return x


@task
def with_ti(ti=None) -> None:
    ti.xcom_pull(task_ids="numbers")


@task
def with_context(**context) -> None:
    return None


@task
def numbers() -> list[int]:
    return [1, 2]


@task
def use(x: object) -> object:
    return x


@dag(dag_id="unrepresentable", schedule=None)
def unrepresentable() -> None:
    with_ti()
    with_context()
    PythonOperator(task_id="ds", python_callable=with_ds)
    PythonOperator(task_id="jinja", python_callable=plain, op_args=["{{ ds }}"])
    PythonOperator(task_id="a_datetime", python_callable=plain, op_args=[datetime.date(2024, 1, 1)])
    PythonOperator(task_id="a_tuple", python_callable=plain, op_kwargs={"x": (1, 2)})
    PythonOperator(task_id="lambda", python_callable=lambda: 1)
    PythonOperator(task_id="varargs", python_callable=varargs, op_args=[1, 2])
    PythonOperator(task_id="rebound", python_callable=rebound, op_args=[1])
    PythonOperator(
        task_id="templates", python_callable=plain, op_args=[1], templates_dict={"d": "{{ ds }}"}
    )

    @task
    def nested() -> int:
        return 1

    nested()
    nums = numbers()
    zipped = use.expand(x=nums.zip(numbers()))
    use.expand(x=nums.map(str))
    use(zipped)
    use(use.expand(x=nums))  # gathers a mapped task: fine
    use(x=[nums])  # an upstream output nested inside a literal


unrepresentable()

rebound = plain  # noqa: F811 - the module-level name no longer is the task's function
