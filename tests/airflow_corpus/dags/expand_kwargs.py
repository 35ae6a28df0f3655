"""expand_kwargs over literal dicts and over an upstream's list of dicts."""

from __future__ import annotations

from airflow.sdk import dag, task


@task
def make_jobs() -> list[dict]:
    return [{"base": 1, "power": 2}, {"base": 3, "power": 3}]


@task
def compute(base: int, power: int) -> int:
    return base**power


@task
def report(values: list[int]) -> str:
    return ",".join(map(str, values))


@dag(dag_id="expand_kwargs", schedule=None)
def expand_kwargs():
    fixed = compute.expand_kwargs([{"base": 2, "power": 5}, {"base": 5, "power": 2}])
    report.override(task_id="report_fixed")(fixed)
    dynamic = compute.override(task_id="compute_dynamic").expand_kwargs(make_jobs())
    report.override(task_id="report_dynamic")(dynamic)


expand_kwargs()
