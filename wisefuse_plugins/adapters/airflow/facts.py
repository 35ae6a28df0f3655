"""What emitters need to rebuild a task in Airflow, as plain JSON in the stage's ``meta``:
its operator, trigger rule, pool, assets, and scheduling settings that differ from
Airflow's defaults."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wisefuse_plugins.adapters.airflow.literals import literal
from wisefuse_plugins.adapters.airflow.operators import (
    operator_class,
    operator_name,
    trigger_rule,
)


def task_meta(task: Any) -> dict[str, Any]:
    """Facts emitters need to rebuild the task in Airflow; plain JSON only."""
    try:
        return _facts(task)
    except Exception:
        return {"task_id": task.task_id}


def _facts(task: Any) -> dict[str, Any]:
    return {
        "operator": operator_name(operator_class(task)),
        "task_id": task.task_id,
        "trigger_rule": trigger_rule(task),
        "pool": str(getattr(task, "pool", "") or ""),
        "multiple_outputs": bool(getattr(task, "multiple_outputs", False)),
        **{attr: names for attr in ("inlets", "outlets") if (names := _assets(task, attr))},
        **({"scheduling": found} if (found := _scheduling(task)) else {}),
    }


#: Settings that decide where, when and as whom a task runs, with Airflow's defaults: one
#: task has one of each, so stages whose ``meta["scheduling"]`` differ never share a unit
#: (:mod:`wisefuse_plugins.plan.scheduling`). ``meta["pool"]`` also names the pool, always.
_SCHEDULING_DEFAULTS: dict[str, Any] = {
    "owner": "airflow",
    "pool": "default_pool",
    "queue": "default",
    "pool_slots": 1,
    "priority_weight": 1,
    "weight_rule": "downstream",
    "executor": None,
    "executor_config": {},
    "run_as_user": None,
    "max_active_tis_per_dag": None,
    "max_active_tis_per_dagrun": None,
    "depends_on_past": False,
    "wait_for_downstream": False,
}


def _scheduling(task: Any) -> dict[str, Any]:
    """The task's scheduling settings that differ from Airflow's defaults, as JSON."""
    found: dict[str, Any] = {}
    for attr, default in _SCHEDULING_DEFAULTS.items():
        value = default
        try:
            value = getattr(task, attr, default)
            value = getattr(value, "value", value)  # enums (weight_rule)
            if value != default:
                found[attr] = literal(value, attr)
        except Exception:  # not JSON, or a mapped operator that cannot say: show its text
            found[attr] = _stable_text(value)
    return found


def _stable_text(value: Any) -> str:
    """``value`` as text that equal values share (dicts and sets with their keys sorted)."""
    if isinstance(value, Mapping):
        items = sorted((_stable_text(k), _stable_text(v)) for k, v in value.items())
        return "{" + ", ".join(f"{k}: {v}" for k, v in items) + "}"
    if isinstance(value, set | frozenset):
        return "{" + ", ".join(sorted(_stable_text(v) for v in value)) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_stable_text(v) for v in value) + "]"
    return repr(value)


def _assets(task: Any, attr: str) -> list[str]:
    """The assets a task reads or emits events for: a rewrite must keep them on the task."""
    try:
        found = list(getattr(task, attr, None) or ())
    except Exception:  # a mapped operator may not resolve them before expansion
        return []
    return [str(getattr(a, "uri", None) or getattr(a, "name", None) or a) for a in found]
