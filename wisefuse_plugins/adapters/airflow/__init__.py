"""Airflow DAGs -> IR workflows.

:func:`load_dag_file` parses a DAG file the way Airflow's DAG processor does (``DagBag``,
no database); :func:`from_dag` turns a DAG into a :class:`~wisefuse_plugins.ir.Workflow`;
:func:`workflow_from_file` does both. See ``docs/airflow-adapter.md`` for the full table.

Only TaskFlow ``@task`` tasks and classic ``PythonOperator`` s become Python stages, and only
when everything their function receives can be written down in the IR: literal JSON
arguments, upstream outputs (XComArgs) and dynamic task mapping over literal lists or an
upstream's output. Anything else -- another operator, the Airflow context, Jinja templates,
a lambda, a trigger rule other than ``all_success`` -- becomes an opaque stage with the
reason: it stays in Airflow untouched and fusion never crosses it. Converting a DAG Airflow
can parse never raises; an unexpected problem with one task makes that task opaque.

One module per idea: ``access`` (Airflow itself, lazily), ``load`` (a DAG file),
``dag`` (the whole DAG -> a workflow), ``task`` (one task -> one stage), ``operators``
(which operators can be Python stages), ``mapping`` (dynamic task mapping), ``calls``
(a Python stage's function and arguments), ``literals`` (arguments as JSON), ``facts``
(what emitters need to rebuild a task), ``history`` (instance counts of a past run),
``context`` (what the conversion shares between tasks).

Airflow is imported lazily, inside the functions, so importing this package is cheap.
"""

from __future__ import annotations

from wisefuse_plugins.adapters.airflow.dag import from_dag, workflow_from_file
from wisefuse_plugins.adapters.airflow.load import load_dag_file
from wisefuse_plugins.adapters.airflow.mapping import DEFAULT_EXPECTED_PARALLELISM

__all__ = [
    "DEFAULT_EXPECTED_PARALLELISM",
    "from_dag",
    "load_dag_file",
    "workflow_from_file",
]
