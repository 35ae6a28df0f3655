"""Airflow itself, imported lazily: whether it is installed, its version, the few names
the adapter needs (imported once, and only when a DAG is converted)."""

from __future__ import annotations

import functools
import sys
from importlib.metadata import PackageNotFoundError, version
from types import SimpleNamespace
from typing import Any

from wisefuse_plugins.errors import MissingExtraError

FEATURE = "reading Airflow DAGs"


def require_airflow() -> None:
    try:
        version("apache-airflow")
    except PackageNotFoundError:
        raise MissingExtraError("apache-airflow", "airflow", FEATURE) from None


def _imported_airflow() -> Any:
    """The real ``airflow`` package when it is imported (not a unit's stand-in), else None."""
    module = sys.modules.get("airflow")
    return module if getattr(module, "__file__", None) else None


def airflow_version() -> str:
    """The running Airflow's version: its ``__version__`` (free, unlike the metadata)."""
    found = getattr(_imported_airflow(), "__version__", None)
    return str(found) if found else version("apache-airflow")


@functools.cache
def airflow_names() -> SimpleNamespace:
    """The few Airflow names the adapter needs, imported once (and only when used)."""
    if _imported_airflow() is None:  # at a DAG file's parse it is: metadata costs ~10 ms
        require_airflow()
    from airflow.sdk.definitions.context import KNOWN_CONTEXT_KEYS
    from airflow.sdk.definitions.mappedoperator import MappedOperator
    from airflow.sdk.definitions.xcom_arg import PlainXComArg, XComArg

    try:  # the standard provider ships with Airflow 3, but is a separate distribution
        from airflow.providers.standard.decorators.python import _PythonDecoratedOperator
        from airflow.providers.standard.operators.python import PythonOperator
    except ImportError:  # pragma: no cover - without it no task is a Python stage
        _PythonDecoratedOperator = PythonOperator = None  # type: ignore[assignment,misc]
    return SimpleNamespace(
        MappedOperator=MappedOperator,
        XComArg=XComArg,
        PlainXComArg=PlainXComArg,
        PythonOperator=PythonOperator,
        Decorated=_PythonDecoratedOperator,
        context_keys=frozenset(KNOWN_CONTEXT_KEYS),
    )
