"""A DAG file that does not import: a dependency is missing on this machine."""

from __future__ import annotations

import not_installed_anywhere_wisefuse  # noqa: F401
from airflow.sdk import dag


@dag(dag_id="broken_dag", schedule=None)
def broken_dag():
    pass


broken_dag()
