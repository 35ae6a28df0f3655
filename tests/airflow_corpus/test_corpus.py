"""The conformance corpus: one DAG per Airflow feature users combine with Python tasks.

For every DAG file in ``dags/``:

- the adapter's IR equals ``expected/<name>.ir.json`` (input/expected pairs: read the
  expected file to see what the adapter makes of the feature). After a deliberate change,
  ``WISEFUSE_UPDATE_EXPECTED=1 pytest tests/airflow_corpus`` rewrites the expected files
  and fails, so the change is reviewed (``git diff tests/airflow_corpus/expected``) and
  the test is run again before anything passes;
- the drop-in ``rewrite`` and the emitted DAG file, under a plan with no fusion, one with
  every one-to-one chain fused and one that also bundles mapped instances, run with
  ``dag.test()`` on the local Lambda and end as the original does: the same state for
  every task they keep, the same ``return_value`` XComs;
- every attribute of every task kept from the original, and every user-visible attribute
  of each unit task, is what the original task had (:func:`attributes`; a fused unit's
  follow the rule in ``docs/airflow.md``: outlets and inlets are the union of its stages',
  retries the largest, the rest its last stage's);
- the rewritten DAGs have the original's DAG settings (serialized), their runs emit the
  same asset events, and their emitted files are ruff-clean;
- the original DAG object is unchanged afterwards (its serialized form, before and after).

Runtime: about 1.5 minutes on two cores (one process, one local Lambda for all).
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.expected import check_expected
from wisefuse_plugins.ir import Workflow, to_json
from wisefuse_plugins.plan.schema import Plan, single_stage_plan

from ..airflow_helpers import (
    dags_folder,
    fused_groups,
    make_plan,
    wisefuse_env_fixture,  # noqa: F401  (the wisefuse_env fixture)
    with_dag_variable,
    write_app,
)

pytestmark = pytest.mark.airflow

HERE = Path(__file__).resolve().parent
DAGS = HERE / "dags"
EXPECTED = HERE / "expected"
NAMES = sorted(p.stem for p in DAGS.glob("*.py"))


# --------------------------------------------------------------------------- the IR


def ir_document(wf: Workflow) -> dict[str, Any]:
    """The workflow's JSON without what depends on the machine (the code root, versions)."""
    doc = json.loads(to_json(wf))
    body = doc["workflow"]
    body["source"]["root"] = "<dags>"
    body["meta"].pop("airflow_version", None)
    return doc


@pytest.mark.parametrize("name", NAMES)
def test_adapter_ir_matches_the_expected_file(name: str) -> None:
    from wisefuse_plugins.adapters.airflow import from_dag, load_dag_file

    got = ir_document(from_dag(load_dag_file(DAGS / f"{name}.py")))
    check_expected(got, EXPECTED / f"{name}.ir.json", name, sort_keys=True)


# --------------------------------------------------------------------------- plans and folders


def corpus_plans(wf: Workflow) -> dict[str, Plan]:
    """No fusion, every one-to-one chain fused, and fused with bundles of 2 (distinct ones)."""
    groups = fused_groups(wf)
    plans: dict[str, Plan] = {}
    for key, plan in (
        ("nofusion", single_stage_plan(wf)),
        ("fused", make_plan(wf, groups)),
        ("bundled", make_plan(wf, groups, 2)),
    ):
        if all(plan.units != p.units for p in plans.values()):
            plans[key] = plan
    return plans


@dataclass
class Case:
    name: str
    folder: Path
    workflow: Workflow
    plans: dict[str, Plan]
    bag: Any
    before: dict[str, Any]  # the original DAG, serialized before anything rewrote it
    runs: dict[str, Any] = field(default_factory=dict)

    def dag_ids(self) -> list[str]:
        ids = []
        for key in self.plans:
            ids += [f"{self.name}__{key}", f"{self.name}__emitted_{key}"]
        return ids


def serialized(dag: Any) -> dict[str, Any]:
    from airflow.serialization.serialized_objects import DagSerialization

    return DagSerialization.to_dict(dag)


def build_case(name: str, folder: Path) -> Case:
    from airflow.dag_processing.dagbag import DagBag

    from wisefuse_plugins.adapters.airflow import load_dag_file

    folder.mkdir(parents=True, exist_ok=True)
    source = with_dag_variable((DAGS / f"{name}.py").read_text())
    assert "dag = " in source or " as dag:" in source, f"{name}.py must end with its DAG"
    (folder / f"{name}.py").write_text(source)
    before = serialized(load_dag_file(folder / f"{name}.py"))
    wf, plans = write_app(name, folder, source, corpus_plans)
    with dags_folder(folder):
        bag = DagBag(dag_folder=str(folder))
    assert bag.import_errors == {}, bag.import_errors
    return Case(name, folder, wf, plans, bag, before)


@pytest.fixture(scope="module")
def cases(
    airflow_home: Path, wisefuse_env: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Case]]:
    root = tmp_path_factory.mktemp("corpus")
    found: dict[str, Case] = {}

    def get(name: str) -> Case:
        if name not in found:
            found[name] = build_case(name, root / name)
        return found[name]

    yield _Lazy(get)


class _Lazy(dict):  # type: ignore[type-arg]
    """Builds a case on first use, so ``-k name`` builds only that one."""

    def __init__(self, get: Any) -> None:
        super().__init__()
        self._get = get

    def __missing__(self, key: str) -> Case:
        case = self._get(key)
        self[key] = case
        return case


# --------------------------------------------------------------------------- runs


@dataclass
class Run:
    state: str
    states: dict[str, set[str]]  # task id -> the states of its instances
    values: dict[str, Any]  # task id -> return_value (a list by map index when mapped)
    assets: list[tuple[str, str]]  # (task id, asset uri) of every asset event of the run


def run(case: Case, dag_id: str) -> Run:
    if dag_id in case.runs:
        return case.runs[dag_id]
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    dag = case.bag.dags[dag_id]
    with dags_folder(case.folder):
        dag_run = dag.test()
    states: dict[str, set[str]] = {}
    for ti in dag_run.get_task_instances():
        states.setdefault(ti.task_id, set()).add(str(ti.state))
    with create_session() as session:
        rows = session.scalars(
            select(XComModel).where(
                XComModel.dag_id == dag_id,
                XComModel.run_id == dag_run.run_id,
                XComModel.key == "return_value",
            )
        ).all()
        pushed = {(r.task_id, r.map_index): XComModel.deserialize_value(r) for r in rows}
        events = session.execute(
            select(AssetEvent.source_task_id, AssetModel.uri)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetEvent.source_dag_id == dag_id, AssetEvent.source_run_id == dag_run.run_id)
        ).all()
    values: dict[str, Any] = {}
    for (task_id, index), value in sorted(pushed.items(), key=lambda kv: kv[0][1]):
        if index < 0:
            values[task_id] = value
        elif _chunked(dag.task_dict[task_id]):  # a bundled unit: each chunk pushes a list
            values.setdefault(task_id, []).extend(value)
        else:
            values.setdefault(task_id, []).append(value)
    assets = sorted((str(t), str(uri)) for t, uri in events)
    case.runs[dag_id] = Run(str(dag_run.state), states, values, assets)
    return case.runs[dag_id]


def _run_plans(case: Case, kind: str) -> list[str]:
    """The plans whose DAG of ``kind`` is run: every plan for the drop-in; for the emitted
    file (the same lowering, rendered to source), the fused plan only where no bundled one
    exists -- the bundled plan fuses the same chains, and a run costs about a second."""
    if kind == "emitted" and "bundled" in case.plans:
        return [key for key in case.plans if key != "fused"]
    return list(case.plans)


def _chunked(task: Any) -> bool:
    return type(task).__name__ == "MappedOperator" and "unit_id" in getattr(
        task, "partial_kwargs", {}
    )


CASES = [(n, k) for n in NAMES for k in ("rewritten", "emitted")]


@pytest.mark.parametrize(("name", "kind"), CASES, ids=["-".join(c) for c in CASES])
def test_rewritten_dag_ends_as_the_original(cases: dict[str, Case], name: str, kind: str) -> None:
    case = cases[name]
    original = run(case, name)
    assert original.state == "success", original.states  # no corpus DAG fails on purpose
    if name.startswith("asset"):  # what the asset check below stands on
        assert original.assets, "the original run emitted no asset event"
    for key in _run_plans(case, kind):
        dag_id = f"{name}__{key}" if kind == "rewritten" else f"{name}__emitted_{key}"
        got = run(case, dag_id)
        assert got.state == original.state, (dag_id, got.states)
        for task_id in case.bag.dags[dag_id].task_dict:
            if task_id in original.states:
                assert got.states[task_id] == original.states[task_id], (dag_id, task_id)
                assert got.values.get(task_id) == original.values.get(task_id), (dag_id, task_id)
        lay = _layout(case, key)
        stands_for = {  # the asset events of a fused stage come from its unit's task
            t: u.task_id for u in lay.units for t in u.stage_tasks.values()
        }
        want = sorted({(stands_for.get(t, t), uri) for t, uri in original.assets})
        assert sorted(set(got.assets)) == want, dag_id
        unit_ids = {u.task_id for u in lay.units}
        for task_id, value in original.values.items():  # nothing the original kept is lost
            if task_id in unit_ids or task_id not in case.bag.dags[dag_id].task_dict:
                continue
            assert got.values.get(task_id) == value, (dag_id, task_id)


# --------------------------------------------------------------------------- attributes

#: What a user sees and Airflow acts on, for every task (unit tasks included).
SETTINGS = (
    "owner",
    "email",
    "email_on_failure",
    "email_on_retry",
    "retries",
    "retry_delay",
    "retry_exponential_backoff",
    "max_retry_delay",
    "execution_timeout",
    "depends_on_past",
    "ignore_first_depends_on_past",
    "wait_for_past_depends_before_skipping",
    "wait_for_downstream",
    "priority_weight",
    "weight_rule",
    "queue",
    "pool",
    "pool_slots",
    "max_active_tis_per_dag",
    "max_active_tis_per_dagrun",
    "executor",
    "executor_config",
    "run_as_user",
    "on_execute_callback",
    "on_failure_callback",
    "on_success_callback",
    "on_retry_callback",
    "on_skipped_callback",
    "inlets",
    "outlets",
    "doc",
    "doc_md",
    "doc_json",
    "doc_yaml",
    "doc_rst",
    "task_display_name",
    "start_date",
    "end_date",
    "params",
)
#: What a unit task has in common with every Python task it stands for.
UNIT_TOO = ("trigger_rule", "is_setup", "is_teardown", "task_display_name", "label")
#: What only a task kept from the original must keep too.
KEPT_ONLY = (
    "task_type",
    "operator_name",
    "trigger_rule",
    "is_setup",
    "is_teardown",
    "multiple_outputs",
    "do_xcom_push",
    "map_index_template",
    "resources",
    "template_fields",
    "template_ext",
)


def attributes(task: Any, names: tuple[str, ...], stands_for: dict[str, str]) -> dict[str, Any]:
    """``task``'s attributes ``names`` (and, for a kept task, its templated fields), comparable
    across DAGs: callables by name, XCom references by the original task they stand for."""
    found: dict[str, Any] = {}
    for attr in names:
        try:
            found[attr] = _plain(getattr(task, attr), stands_for)
        except Exception as err:  # a mapped operator may not resolve an attribute
            found[attr] = f"<{type(err).__name__}>"
    if "template_fields" in names:
        holder = task.partial_kwargs if hasattr(task, "partial_kwargs") else None
        for f in task.template_fields:
            value = holder.get(f) if holder is not None else getattr(task, f, None)
            found[f"template:{f}"] = _plain(value, stands_for)
        for attr in ("expand_input", "op_kwargs_expand_input"):
            if hasattr(task, attr):
                found[attr] = _plain(getattr(task, attr), stands_for)
    found["group"] = _group_ids(task)
    return found


def _group_ids(task: Any) -> list[Any]:
    """The task's groups, innermost first, with what a user sees of them."""
    ids, group = [], task.task_group
    while group is not None and group.group_id is not None:
        shown = [group.tooltip, group.prefix_group_id, group.ui_color, group.default_args]
        ids.append(_plain(shown, {}))
        kind = "mapped" if hasattr(group, "_expand_input") else "group"
        ids.append(f"{kind}:{group.group_id}")
        group = group.parent_group
    return ids


def _plain(value: Any, stands_for: dict[str, str]) -> Any:
    from airflow.sdk.definitions.xcom_arg import PlainXComArg

    if isinstance(value, PlainXComArg):
        tid = value.operator.task_id
        return ("xcom", stands_for.get(tid, tid), value.key)
    if isinstance(value, enum.Enum):
        return value.value
    if callable(value) and hasattr(value, "__qualname__"):
        return ("callable", getattr(value, "__module__", "").rsplit("_", 1)[-1], value.__qualname__)
    if isinstance(value, dict):
        return {str(k): _plain(v, stands_for) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_plain(v, stands_for) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    if value is None or isinstance(value, str | int | float | bool | dt.timedelta | dt.datetime):
        return value
    if hasattr(value, "__attrs_attrs__"):  # Asset, ExpandInput, Param...
        return (
            type(value).__name__,
            {f.name: _plain(getattr(value, f.name), stands_for) for f in value.__attrs_attrs__},
        )
    if type(value).__name__ == "ParamsDict":
        return {k: _plain(value.get_param(k), stands_for) for k in value}
    if type(value).__name__ == "Param":
        return ("Param", _plain(value.value, stands_for), _plain(value.schema, stands_for))
    return repr(value)


def _layout(case: Case, key: str) -> Any:
    from wisefuse_plugins.providers.airflow.layout import layout
    from wisefuse_plugins.providers.airflow.xcomrefs import opaque_reads

    original = case.bag.dags[case.name]
    return layout(case.workflow, case.plans[key], reads=opaque_reads(original, case.workflow))


def _stands_for(lay: Any) -> dict[str, str]:
    """Rewritten task id -> the original task whose value it hands on (relays)."""
    return {
        r.task_id: (r.key if r.key != "return_value" else r.source_task_id)
        for r in lay.relays.values()
    }


def _merged(values: list[Any], attr: str) -> Any:
    """The rule for a fused unit (docs/airflow.md), written independently of the code:
    ``values`` are the stages' :func:`attributes` (callables as names), in stage order."""
    if attr in ("inlets", "outlets"):
        out: list[Any] = []
        for v in values:
            out += [x for x in v if x not in out]
        return out
    if attr == "retries":
        return max(values)
    if attr == "execution_timeout":
        return None if None in values else sum(values[1:], values[0])
    if attr.endswith("_callback") and any(v != values[-1] for v in values):
        found: list[Any] = []
        for v in values:
            for fn in v if isinstance(v, list) else [v] if v is not None else []:
                if fn not in found:
                    found.append(fn)
        return found
    return values[-1]


@pytest.mark.parametrize(("name", "kind"), CASES, ids=["-".join(c) for c in CASES])
def test_tasks_keep_their_attributes(cases: dict[str, Case], name: str, kind: str) -> None:
    case = cases[name]
    original = case.bag.dags[name]
    for key in case.plans:
        dag_id = f"{name}__{key}" if kind == "rewritten" else f"{name}__emitted_{key}"
        dag = case.bag.dags[dag_id]
        lay = _layout(case, key)
        stands_for = _stands_for(lay)
        for sid in lay.opaque:
            tid = case.workflow.stage(sid).name
            got = attributes(dag.task_dict[tid], SETTINGS + KEPT_ONLY, stands_for)
            assert got == attributes(original.task_dict[tid], SETTINGS + KEPT_ONLY, {}), (
                dag_id,
                tid,
            )
        for u in lay.units:
            shown = (*SETTINGS, *UNIT_TOO)
            got = attributes(dag.task_dict[u.task_id], shown, {})
            stages = [attributes(original.task_dict[t], shown, {}) for t in u.stage_tasks.values()]
            want = {a: _merged([s[a] for s in stages], a) for a in got}
            assert got == want, (dag_id, u.task_id)


def _dag_settings(dag: Any) -> dict[str, Any]:
    """The DAG's serialized settings, but for its tasks and what says which DAG it is."""
    found = dict(serialized(dag)["dag"])
    for key in ("tasks", "task_group", "dag_id", "_dag_id", "tags", "fileloc", "relative_fileloc"):
        found.pop(key, None)
    text = json.dumps(found, sort_keys=True, default=str)
    found = json.loads(text.replace(json.dumps(dag.dag_id), '"<dag>"'))
    if found.get("dag_display_name") == "<dag>":  # the default: its dag_id
        del found["dag_display_name"]
    return found


@pytest.mark.parametrize(("name", "kind"), CASES, ids=["-".join(c) for c in CASES])
def test_dags_keep_their_settings(cases: dict[str, Case], name: str, kind: str) -> None:
    """Schedule (an asset schedule too), params, default_args, callbacks...: all kept."""
    case = cases[name]
    want = _dag_settings(case.bag.dags[name])
    for key in case.plans:
        dag_id = f"{name}__{key}" if kind == "rewritten" else f"{name}__emitted_{key}"
        dag = case.bag.dags[dag_id]
        got = _dag_settings(dag)
        for flag in ("has_on_success_callback", "has_on_failure_callback"):
            # the drop-in adds its own (it releases the run's plan pin, see docs/airflow.md)
            assert got.pop(flag, False) or not want.get(flag), (dag_id, flag)
        assert got == {k: v for k, v in want.items() if not k.startswith("has_on_")}, dag_id
        assert set(case.bag.dags[name].tags or ()) <= set(dag.tags or ()), dag_id


# --------------------------------------------------------------------------- the original


@pytest.mark.parametrize("name", NAMES)
def test_the_original_dag_is_unchanged(cases: dict[str, Case], name: str) -> None:
    """Rewritten (with ``suffix=``, side by side), emitted, and all of them run: the original
    DAG object serializes as it did before, and a fresh rewrite of it changes nothing either."""
    from wisefuse_plugins.adapters.airflow import load_dag_file
    from wisefuse_plugins.airflow import rewrite
    from wisefuse_plugins.emitters.airflow import emit_dag

    case = cases[name]
    for dag_id in case.dag_ids():
        run(case, dag_id)
    assert serialized(case.bag.dags[name]) == case.before
    with dags_folder(case.folder):
        fresh = load_dag_file(case.folder / f"{name}.py", name)
        for key, plan in case.plans.items():
            assert rewrite(fresh, plan, suffix=f"__again_{key}") is not fresh
            emit_dag(case.workflow, plan, dag=fresh)
    assert serialized(fresh) == case.before


def test_emitted_files_are_ruff_clean(cases: dict[str, Case]) -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    assert ruff is not None, "ruff comes with the dev extra"
    files = [str(p) for name in NAMES for p in sorted(cases[name].folder.glob("emitted_*.py"))]
    assert len(files) >= len(NAMES)
    check = subprocess.run(
        [ruff, "check", "--isolated", "--select", "E,F,W,I,B,UP,SIM", *files],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout
    fmt = subprocess.run(
        [ruff, "format", "--isolated", "--check", "--diff", *files], capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


_FRESH_PARSE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
out = {}
for folder in sys.argv[1:]:
    bag = DagBag(dag_folder=folder)
    out[folder] = {"errors": {k: v[-300:] for k, v in bag.import_errors.items()},
                   "dags": {d: sorted(dag.task_dict) for d, dag in bag.dags.items()}}
print(json.dumps(out))
"""


def test_each_file_parses_alike_in_a_fresh_process(cases: dict[str, Case]) -> None:
    """The dag-processor parses a file in a process of its own, where nothing wisefuse
    caches (an operator's defaults, the plan snapshots) was made before, and possibly inside
    the DAG's own ``with DAG()`` block: the same DAGs with the same tasks as here. (A bare
    operator made to read the defaults once joined the first DAG parsed as a task.)"""
    folders = {str(cases[name].folder): cases[name] for name in NAMES}
    env = {**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": next(iter(folders))}
    done = subprocess.run(
        [sys.executable, "-c", _FRESH_PARSE, *folders],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    fresh = json.loads(done.stdout.strip().splitlines()[-1])
    for folder, case in folders.items():
        assert fresh[folder]["errors"] == {}, fresh[folder]["errors"]
        here = {d: sorted(dag.task_dict) for d, dag in case.bag.dags.items()}
        assert fresh[folder]["dags"] == here, case.name
