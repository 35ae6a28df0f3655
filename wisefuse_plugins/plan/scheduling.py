"""Scheduling settings: what an orchestrator lets one task have only one of.

An adapter records in ``Stage.meta["scheduling"]`` the settings of a stage's task that
decide where, when and as whom the orchestrator runs it (for Airflow: pool, queue,
priority, executor, owner...), only where they differ from the framework's defaults, as
JSON. A unit runs as one task, so it can carry only one value of each: stages whose
settings differ never share a unit. This is the one rule for it, framework-free: the
optimizer asks :func:`same_scheduling` before it merges units, and
:func:`~wisefuse_plugins.plan.schema.check_plan` reports :func:`scheduling_problem` for a
plan that fuses such stages anyway (one written by hand).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import JsonValue

from wisefuse_plugins.ir import Workflow

KEY = "scheduling"
"""The key of ``Stage.meta`` that holds a stage's non-default scheduling settings."""


def scheduling_of(workflow: Workflow, stage_id: str) -> Mapping[str, JsonValue]:
    """The stage's non-default scheduling settings (empty: the framework's defaults)."""
    found = workflow.stage(stage_id).meta.get(KEY)
    return found if isinstance(found, Mapping) else {}


def same_scheduling(workflow: Workflow, stages: Sequence[str]) -> bool:
    """True when the stages may share a unit: their scheduling settings are equal."""
    first = scheduling_of(workflow, stages[0]) if stages else {}
    return all(scheduling_of(workflow, s) == first for s in stages[1:])


def scheduling_conflicts(
    workflow: Workflow, stages: Sequence[str]
) -> dict[str, dict[str, JsonValue | None]]:
    """Each setting on which ``stages`` differ -> every stage's value (None: the default)."""
    values = {s: scheduling_of(workflow, s) for s in stages}
    names = sorted({name for v in values.values() for name in v})
    out: dict[str, dict[str, JsonValue | None]] = {}
    for name in names:
        per_stage = {s: v.get(name) for s, v in values.items()}
        first = per_stage[stages[0]]
        if any(v != first for v in per_stage.values()):
            out[name] = per_stage
    return out


def scheduling_problem(unit_id: str, workflow: Workflow, stages: Sequence[str]) -> str | None:
    """Why the unit cannot hold ``stages`` (settings, values, fix), or None when it can."""
    differ = scheduling_conflicts(workflow, stages)
    if not differ:
        return None
    shown = "; ".join(f"{name} is {_by_value(per_stage)}" for name, per_stage in differ.items())
    settings = ", ".join(differ)
    return (
        f"unit {unit_id!r} fuses stages whose scheduling settings differ: {shown}. A unit "
        f"runs as one task, which has one value of each: split the unit where the settings "
        f"change, or give these tasks the same {settings}"
    )


def _by_value(per_stage: Mapping[str, JsonValue | None]) -> str:
    """``'io' in 'a', 'b' and the default in 'c'``: each value with the stages that have it."""
    groups: list[tuple[JsonValue | None, list[str]]] = []
    for stage, value in per_stage.items():
        for v, members in groups:
            if v == value:
                members.append(stage)
                break
        else:
            groups.append((value, [stage]))
    parts = [
        f"{'the default' if v is None else repr(v)} in {', '.join(map(repr, members))}"
        for v, members in groups
    ]
    return " and ".join(parts)
