"""A DAG that updates assets from Python tasks, and reads one as an inlet."""

from __future__ import annotations

from airflow.sdk import Asset, dag, task

RAW = Asset("file:///data/raw/orders.csv")
CLEAN = Asset("file:///data/clean/orders.parquet", extra={"team": "sales"})
RATES = Asset("exchange_rates")


@task(outlets=[RAW])
def extract() -> list[dict]:
    return [{"id": 1, "amount": 10.0}, {"id": 2, "amount": 32.5}]


@task(inlets=[RATES])
def convert(orders: list[dict]) -> list[dict]:
    return [{**o, "amount": round(o["amount"] * 1.1, 2)} for o in orders]


@task(outlets=[CLEAN])
def load(orders: list[dict]) -> int:
    return len(orders)


@dag(dag_id="assets", schedule=None)
def assets():
    load(convert(extract()))


assets()
