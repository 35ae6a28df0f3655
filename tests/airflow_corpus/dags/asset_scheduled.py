"""A DAG scheduled on an asset, whose Python tasks emit another asset."""

from __future__ import annotations

from airflow.sdk import Asset, dag, task

CLEAN = Asset("file:///data/clean/orders.parquet", extra={"team": "sales"})
REPORT = Asset("file:///data/reports/daily.txt")


@task
def summarize() -> dict:
    return {"orders": 2, "revenue": 46.75}


@task(outlets=[REPORT])
def write_report(summary: dict) -> str:
    return f"{summary['orders']} orders, {summary['revenue']:.2f}"


@dag(dag_id="asset_scheduled", schedule=[CLEAN])
def asset_scheduled():
    write_report(summarize())


asset_scheduled()
