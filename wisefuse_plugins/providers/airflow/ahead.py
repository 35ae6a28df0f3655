"""Prepared layouts made at plan time, so that no parse of a drop-in DAG pays for them.

A parse of a drop-in DAG finds its :mod:`prepared layout <.prepared>` by a key computed
from the plan's bytes and the DAG as that parse sees it; without one it reads the DAG with
the adapter and lays out the units (about 60 ms and the pydantic models, per fresh
process). ``wisefuse optimize DAG_FILE`` writes a plan and then calls
:func:`prepare_dag_file`: the DAG file is parsed as the dag-processor parses it, each
``rewrite(dag, plan)`` call in it is recorded instead of run (:func:`recording`), and for
each the record the parse would compute is computed and kept, under the key that parse
computes (same function, same DAG object as ``rewrite`` receives it, same plan bytes), so
the dag-processor's first parse after the plan change reads it.

A record is only ever a shortcut: a parse that computes another key (another
``$WISEFUSE_HOME``, an environment that changes a task's arguments, a DAG file edited
after planning) computes the layout itself, as before, and keeps it.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import DAG

__all__ = ["Call", "prepare_dag_file", "prepare_target", "recording"]


@dataclass
class Call:
    """One ``rewrite(dag, plan, parallelism=...)`` call met while a DAG file was loaded."""

    dag: DAG
    plan: Any
    parallelism: Mapping[str, int] | None


_calls: contextvars.ContextVar[list[Call] | None] = contextvars.ContextVar(
    "wisefuse_rewrite_calls", default=None
)


def recording() -> list[Call] | None:
    """The list :func:`~.rewrite.rewrite` appends its call to (and returns its DAG as it is)
    while :func:`prepare_dag_file` loads a DAG file; None otherwise."""
    return _calls.get()


@contextlib.contextmanager
def _recorded() -> Iterator[list[Call]]:
    calls: list[Call] = []
    token = _calls.set(calls)
    try:
        yield calls
    finally:
        _calls.reset(token)


def prepare_dag_file(path: str | os.PathLike[str], dag_id: str | None = None) -> list[str]:
    """Parse the DAG file ``path`` as the dag-processor does and keep the prepared layout of
    each drop-in ``rewrite(...)`` call in it (``dag_id``: only that DAG's); one line per
    call saying what was done. Raises what :func:`~wisefuse_plugins.adapters.airflow.load_dag_file`
    raises when the file does not load."""
    from wisefuse_plugins.providers.airflow import prepared

    if not prepared.enabled():
        return [f"prepared layouts are off ({prepared.CACHE_ENV}=0): the first parse makes it"]
    from wisefuse_plugins.adapters.airflow import load_dag_file

    with _recorded() as calls:
        load_dag_file(path, dag_id)
    said = [_prepare(c) for c in calls if dag_id is None or c.dag.dag_id == dag_id]
    return [s for s in said if s]


def _prepare(call: Call) -> str | None:
    """Compute and keep the record of one call, as :func:`~.rewrite.rewrite` would."""
    from wisefuse_plugins.errors import WiseFuseError
    from wisefuse_plugins.providers.airflow import prepared
    from wisefuse_plugins.providers.airflow.planfiles import (
        PlanFileError,
        beside,
        read_file,
        sha_of,
    )

    dag = call.dag
    if not isinstance(call.plan, str | os.PathLike):
        return None  # a Plan object: a parse keeps no record of it either
    plan_path = beside(call.plan, getattr(dag, "fileloc", None))
    where = f"DAG {dag.dag_id!r} (plan {os.fspath(plan_path)})"
    try:
        data = read_file(plan_path, "plan file", "")
    except PlanFileError as err:
        return f"{where}: no layout prepared: {err.message}"
    key = prepared.fingerprint(dag, sha_of(data), call.parallelism)
    if key is None:
        return f"{where}: no layout prepared (the DAG holds a value its key cannot encode)"
    records = prepared.Records()
    if records.get(dag.dag_id, key) is not None:
        return f"{where}: its prepared layout is there already"
    try:
        from wisefuse_plugins.adapters.airflow import from_dag
        from wisefuse_plugins.plan.schema import plan_from_json

        plan = plan_from_json(data, what=f"plan file {os.fspath(plan_path)}")
        doc = prepared.record(dag, from_dag(dag, parallelism=call.parallelism), plan)
    except WiseFuseError as err:  # the parse will say it, with the fix
        return f"{where}: no layout prepared: {err.message}"
    except Exception as err:  # the parse reports it (and runs the original)
        return f"{where}: no layout prepared: {type(err).__name__}: {err}"
    records.put(dag.dag_id, key, doc, made="plan")
    folder = records.state.root
    if doc.get("problems"):
        return f"{where}: the plan does not fit the DAG; the parse reads why from {folder}"
    return f"{where}: prepared layout kept in {folder} (its first parse reads it)"


def prepare_target(target: str, plan_path: str | os.PathLike[str]) -> list[str]:
    """:func:`prepare_dag_file` for a ``wisefuse optimize`` target when it is an Airflow
    DAG file (``dags/etl.py[::DAG_ID]``); nothing for IR files and other frameworks. Never
    raises: the plan is written already, and a parse can always make its own record."""
    from wisefuse_plugins.targets import framework_of, split_target

    path, entry = split_target(target)
    try:
        if path.suffix != ".py" or framework_of(path) != "airflow":
            return []
        said = prepare_dag_file(path, entry)
    except Exception as err:  # a parse can always make its own record
        return [f"no prepared layout for {target}: {type(err).__name__}: {err}"]
    if not said:
        return [
            f"{target} has no `rewrite(dag, {os.fspath(plan_path)!r})` line yet: its first "
            "parse with one prepares the layout (or run `wisefuse optimize` again then)"
        ]
    return said
