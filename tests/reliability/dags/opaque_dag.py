"""Python tasks next to an operator wisefuse has never heard of (it stays in Airflow)."""

from __future__ import annotations

import sys
from pathlib import Path

from airflow.sdk import BaseOperator, dag, task

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "faulty"))
import faulty_app


class CopyToWarehouse(BaseOperator):
    """A custom operator: not Python we can move, so it stays where it is."""

    def execute(self, context):
        return None


@dag(dag_id="opaque_dag", schedule=None)
def opaque_dag():
    numbers = task(faulty_app.seeded)(n=3, seed=1)
    values = task(faulty_app.crunch).expand(v=numbers)
    summary = task(faulty_app.checksum)(values, seed=1)
    summary >> CopyToWarehouse(task_id="copy_to_warehouse")


opaque_dag()
