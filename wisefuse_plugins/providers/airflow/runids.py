"""The store run id of a DAG run: one per run, shared by every task of it.

Unit tasks and ``@task.wisefuse_lambda`` tasks of one DAG run must find each other's
outputs in the store, so they all derive the run id the same way, from the dag_id and
Airflow's run id; Airflow's ids hold characters the store does not accept.
"""

from __future__ import annotations

import hashlib
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def store_run_id(dag_id: str, run_id: str, *extra: str) -> str:
    """A store-safe run id for a DAG run: readable, at most 128 characters, collision-free.

    Airflow run ids hold ``:`` and ``+`` (``manual__2025-01-01T00:00:00+00:00``); the store
    accepts ``[A-Za-z0-9_.-]``. A hash of the raw ids keeps two runs apart after cleaning.
    """
    from wisefuse_plugins.runtime import store as st

    raw = "\x1f".join([dag_id, run_id, *extra])
    digest = hashlib.sha256(raw.encode()).hexdigest()[:10]
    text = re.sub(r"\.{2,}", ".", _UNSAFE.sub("_", ".".join([dag_id, run_id, *extra])))
    text = text.strip(".-")[:100] or "run"
    if not (text[0].isalnum() or text[0] == "_"):
        text = "r" + text
    return st.check_key(f"{text}-{digest}")
