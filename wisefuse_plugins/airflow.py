"""The Airflow side of wisefuse-plugins, by the names users import.

``rewrite`` is the drop-in (a DAG file ends with ``dag = rewrite(dag, plan_path)``);
``OriginalDag`` and ``copy_task`` are what emitted DAG files use for their opaque tasks;
``opaque_reads`` tells which Python stages an opaque task reads. The code lives in
:mod:`wisefuse_plugins.providers.airflow` (``rewrite``, ``original``, ``xcomrefs``), as
:mod:`wisefuse_plugins.prefect` re-exports the Prefect side.
"""

from wisefuse_plugins.providers.airflow.original import OriginalDag, copy_task
from wisefuse_plugins.providers.airflow.rewrite import rewrite
from wisefuse_plugins.providers.airflow.xcomrefs import opaque_reads

__all__ = ["OriginalDag", "copy_task", "opaque_reads", "rewrite"]
