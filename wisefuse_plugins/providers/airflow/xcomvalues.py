"""Data between unit tasks: what each pushes to XCom, pulls from upstream, and returns.

Small values pass by value (:mod:`wisefuse_plugins.runtime.passing`), through XCom like any
Airflow value, the rest through the store. Each unit task pushes the pickles its response
passed by value, and the counts of its mapped stages and scattered lists, under
:data:`VALUES_KEY` (:func:`passed_on`); a unit task pulls them from the unit tasks upstream
(:func:`pull_upstream`) and copies the opaque tasks' XComs it reads into the store
(:func:`stage_in`). What Airflow tasks see through XCom are the exported stages' exact
values (:func:`output_values`). Shared by the unit operator and ``@task.wisefuse_lambda``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wisefuse_plugins.providers.airflow.layout import OpaqueInput
    from wisefuse_plugins.runtime import passing
    from wisefuse_plugins.runtime import store as st

VALUES_KEY = "wisefuse_values"
"""The XCom a unit task pushes for the unit tasks downstream: ``{"outputs": [{"key": store
key, "pickle": base64}, ...], "counts": {stage: n}}``, the outputs its response passed by
value (shaped as response records, for :meth:`passing.Values.take`) and how many instances
each exported mapped stage ran, or elements each exported list had (the store may no longer
hold them all to count)."""


def passed_on(payload: Mapping[str, Any]) -> dict[str, Any]:
    """What a unit's response hands to the units downstream (:data:`VALUES_KEY`)."""
    outputs = payload.get("outputs") or []
    counts: dict[str, int] = {}
    for rec in outputs:
        stage = rec["stage"]
        if rec.get("instance") is not None:
            counts[stage] = max(counts.get(stage, 0), int(rec["instance"]) + 1)
        elif "count" in rec:
            counts[stage] = int(rec["count"])
    return {
        "outputs": [{"key": r["key"], "pickle": r["pickle"]} for r in outputs if "pickle" in r],
        "counts": counts,
    }


def pull_upstream(ti: Any, task_ids: Sequence[str]) -> tuple[passing.Values, dict[str, int]]:
    """The values the unit tasks ``task_ids`` passed by value, and the counts they pushed.

    A mapped unit task pushes once per chunk: the chunks' counts of a stage are merged by
    their largest (instance numbers are the stage's own, chunk after chunk).
    """
    from wisefuse_plugins.runtime import passing

    values = passing.Values()
    counts: dict[str, int] = {}
    pushed = ti.xcom_pull(task_ids=list(task_ids), key=VALUES_KEY) if task_ids else []
    for passed in pushed or []:
        if not passed:  # a task (or chunk) that passed nothing on
            continue
        values.take(passed)
        for stage, n in (passed.get("counts") or {}).items():
            counts[stage] = max(counts.get(stage, 0), n)
    return values, counts


def stage_in(
    ti: Any, store: st.Store, run_id: str, inputs: Mapping[str, OpaqueInput]
) -> dict[str, int]:
    """Copy opaque tasks' XComs that the unit reads into the store; returns their counts.

    Writes are first-write-wins, so the tasks of a run that read the same opaque value
    store it once.
    """
    from wisefuse_plugins.runtime import store as st

    counts: dict[str, int] = {}
    for stage, src in inputs.items():
        what = f"the XCom of task {src.task_id!r}"
        if src.mapped:
            values = list(ti.xcom_pull(task_ids=[src.task_id]) or [])
            for i, v in enumerate(values):
                st.put(store, st.output_key(run_id, stage, i), v, what)
            counts[stage] = len(values)
            continue
        value = ti.xcom_pull(task_ids=src.task_id)
        for key in src.keys:
            if not (isinstance(value, Mapping) and key in value):
                extra = ti.xcom_pull(task_ids=src.task_id, key=key)
                value = {**(value if isinstance(value, Mapping) else {}), key: extra}
        st.put(store, st.output_key(run_id, stage), value, what)
        if src.elements:
            items = list(value or [])
            for i, item in enumerate(items):
                st.put(store, st.element_key(run_id, stage, i), item, f"{what}, element {i}")
            counts[stage] = len(items)
    return counts


_EXACT_IN_JSON = (str, int, float, bool, type(None))


def output_values(payload: Mapping[str, Any], store: st.Store, stages: Sequence[str]) -> dict:
    """Each exported stage's value (a list over instances for a mapped stage), exactly.

    A scalar comes inline in the response; anything else from its pickle when the response
    passed it by value (it is in no store), else from the store: the inline copy went
    through JSON (a tuple would come back a list, an int dict key a string) and XCom must
    see what the function returned.
    """
    from wisefuse_plugins.runtime import passing
    from wisefuse_plugins.runtime import store as st

    whole: dict[str, Any] = {}
    per_instance: dict[str, dict[int, Any]] = {}
    for rec in payload.get("outputs", []):
        stage = rec.get("stage")
        if stage not in stages:
            continue
        inline = "value" in rec and isinstance(rec["value"], _EXACT_IN_JSON)
        if inline:
            value = rec["value"]
        elif "pickle" in rec:
            value = st.loads(passing.decode(rec["pickle"]))
        else:
            value = st.get(store, rec["key"])
        if rec.get("instance") is None:
            whole[stage] = value
        else:
            per_instance.setdefault(stage, {})[int(rec["instance"])] = value
    for stage, found in per_instance.items():
        whole[stage] = [found[i] for i in sorted(found)]
    return whole
