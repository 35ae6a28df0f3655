"""make -> work (mapped, retries=2 as Airflow knows it) -> total, over faulty_app.

The tasks are faulty_app's plain functions, so the workers import that file, not Airflow.
WISEFUSE_RELIABILITY_CTL names the control folder the tests arm faults in.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from airflow.sdk import dag, task

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "faulty"))
import faulty_app

CTL = os.environ.get("WISEFUSE_RELIABILITY_CTL", "/nonexistent")


@dag(dag_id="retry_dag", schedule=None)
def retry_dag():
    numbers = task(faulty_app.make)(n=4)
    values = task(faulty_app.work, retries=2).partial(ctl=CTL).expand(x=numbers)
    task(faulty_app.total)(values)


retry_dag()
