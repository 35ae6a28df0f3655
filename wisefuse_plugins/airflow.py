"""The Airflow side of wisefuse-plugins, by the names users import.

``rewrite`` is the drop-in (a DAG file ends with ``dag = rewrite(dag, plan_path)``);
``OriginalDag`` and ``copy_task`` are what emitted DAG files use for their opaque tasks;
``opaque_reads`` tells which Python stages an opaque task reads. The code lives in
:mod:`wisefuse_plugins.providers.airflow` (``rewrite``, ``original``, ``xcomrefs``), as
:mod:`wisefuse_plugins.prefect` re-exports the Prefect side.

Each name is imported on first use (PEP 562): a DAG file is parsed in a fresh process
every time, and an emitted file that needs only ``OriginalDag`` should not pay for the
drop-in's modules (issue 19 item 6).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wisefuse_plugins.lazy import lazy_exports

if TYPE_CHECKING:
    from wisefuse_plugins.providers.airflow.original import OriginalDag, copy_task
    from wisefuse_plugins.providers.airflow.rewrite import rewrite
    from wisefuse_plugins.providers.airflow.xcomrefs import opaque_reads

__all__ = ["OriginalDag", "copy_task", "opaque_reads", "rewrite"]

_WHERE = {
    "OriginalDag": "wisefuse_plugins.providers.airflow.original",
    "copy_task": "wisefuse_plugins.providers.airflow.original",
    "opaque_reads": "wisefuse_plugins.providers.airflow.xcomrefs",
    "rewrite": "wisefuse_plugins.providers.airflow.rewrite",
}


__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
