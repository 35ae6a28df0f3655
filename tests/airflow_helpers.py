"""Helpers shared by the Airflow rewrite tests and the conformance corpus.

Plans built by hand from the adapter's workflow (no fusion, every one-to-one chain fused,
bundles), a DAG folder with the drop-in line once per plan and an emitted file per plan,
Airflow's DAG folder pointed at it, and a private WiseFuse home with a fresh local Lambda.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from wisefuse_plugins.ir import Workflow, dump
from wisefuse_plugins.ir.nodes import EdgePattern
from wisefuse_plugins.plan.scheduling import same_scheduling
from wisefuse_plugins.plan.schema import (
    Plan,
    Unit,
    dump_plan,
    hashes_of,
    is_bundled_unit,
    plan_problems,
    single_stage_plan,
)

__all__ = [
    "ADOPT",
    "dags_folder",
    "fused_groups",
    "make_plan",
    "plans_for",
    "wisefuse_env_fixture",
    "with_dag_variable",
    "write_app",
]


# --------------------------------------------------------------------------- plans


def fused_groups(wf: Workflow) -> list[list[str]]:
    """Python stages joined along every one-to-one data edge between two Python stages
    with the same scheduling settings (a unit task has one pool, queue...)."""
    parent = {s.id: s.id for s in wf.python_stages}

    def find(x: str) -> str:
        while parent[x] != x:
            x = parent[x]
        return x

    for e in wf.edges:
        one_to_one = e.pattern == EdgePattern.ONE_TO_ONE and e.kind == "data"
        if (
            one_to_one
            and e.src in parent
            and e.dst in parent
            and same_scheduling(wf, [e.src, e.dst])
        ):
            parent[find(e.dst)] = find(e.src)
    groups: dict[str, list[str]] = {}
    for sid in wf.topological_order():
        if sid in parent:
            groups.setdefault(find(sid), []).append(sid)
    return list(groups.values())


def make_plan(wf: Workflow, groups: list[list[str]], bundle: int = 1) -> Plan:
    units = []
    for g in groups:
        uid = "-".join(g)
        if len(uid) > 64:  # a Lambda name
            uid = f"{g[0][:50]}-and-{len(g) - 1}"
        unit = Unit(id=uid, stages=g)
        if bundle > 1 and is_bundled_unit(unit, wf):
            unit = unit.model_copy(update={"bundle_size": bundle})
        units.append(unit)
    plan = Plan(workflow=wf.name, units=units, code_hashes=hashes_of(wf))
    assert plan_problems(plan, wf) == []
    return plan


def plans_for(wf: Workflow) -> dict[str, Plan]:
    groups = fused_groups(wf)
    return {
        "nofusion": single_stage_plan(wf),
        "b2": make_plan(wf, groups, 2),
        "b5": make_plan(wf, groups, 5),
    }


# --------------------------------------------------------------------------- the folders


ADOPT = """

# --- added by the test: the drop-in line, once per plan -------------------------------
from pathlib import Path as _Path  # noqa: E402

from wisefuse_plugins.airflow import rewrite as _rewrite  # noqa: E402

_HERE = _Path(__file__).parent
"""


@contextmanager
def dags_folder(folder: Path) -> Iterator[None]:
    """Make ``folder`` Airflow's DAG folder (dag.test() re-parses it into the database)."""
    import airflow.settings

    old, old_env = airflow.settings.DAGS_FOLDER, os.environ.get("AIRFLOW__CORE__DAGS_FOLDER")
    airflow.settings.DAGS_FOLDER = str(folder)
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(folder)
    try:
        yield
    finally:
        airflow.settings.DAGS_FOLDER = old
        if old_env is None:
            os.environ.pop("AIRFLOW__CORE__DAGS_FOLDER", None)
        else:
            os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = old_env


@pytest.fixture(scope="module", name="wisefuse_env")
def wisefuse_env_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private WISEFUSE_HOME (store, unit specs) and a fresh process-wide local Lambda."""
    from wisefuse_plugins.providers.airflow.hooks import close_local

    home = tmp_path_factory.mktemp("wisefuse-home")
    saved = {k: os.environ.get(k) for k in ("WISEFUSE_HOME", "WISEFUSE_STORE", "WISEFUSE_DB_URL")}
    saved["WISEFUSE_LOCAL_CONCURRENCY"] = os.environ.get("WISEFUSE_LOCAL_CONCURRENCY")
    os.environ["WISEFUSE_HOME"] = str(home)
    os.environ["WISEFUSE_LOCAL_CONCURRENCY"] = "16"  # keep every unit's worker warm
    for k in ("WISEFUSE_STORE", "WISEFUSE_DB_URL"):
        os.environ.pop(k, None)
    close_local()
    yield home
    close_local()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def with_dag_variable(source: str) -> str:
    """``source`` with a final bare ``my_dag()`` call assigned to ``dag`` (the rewrite lines use it)."""
    return re.sub(r"^(\w+)\(\)\s*\Z", r"dag = \1()\n", source, flags=re.M)


def write_app(
    name: str, folder: Path, source: str, make_plans: Callable[[Workflow], dict[str, Plan]]
) -> tuple[Workflow, dict[str, Plan]]:
    """Write the DAG file ``source`` with one rewrite line per plan of ``make_plans`` at its
    end, the emitted file of each plan beside it, and the IR and plan files they read."""
    from wisefuse_plugins.adapters.airflow import from_dag, load_dag_file
    from wisefuse_plugins.emitters.airflow import emit_dag

    (folder / f"{name}.py").write_text(source)
    original = load_dag_file(folder / f"{name}.py")
    wf = from_dag(original)
    plans = make_plans(wf)
    dump(wf, folder / f"{name}.ir.json")
    lines = [ADOPT]
    for key, plan in plans.items():
        dump_plan(plan, folder / f"{name}.{key}.plan.json")
        lines.append(
            f'dag_{key} = _rewrite(dag, _HERE / "{name}.{key}.plan.json", suffix="__{key}")\n'
        )
        text = emit_dag(
            wf,
            plan,
            dag=original,
            dag_id=f"{name}__emitted_{key}",
            plan_file=f"{name}.{key}.plan.json",
            workflow_file=f"{name}.ir.json",
        )
        (folder / f"emitted_{name}_{key}.py").write_text(text)
    with open(folder / f"{name}.py", "a") as f:
        f.write("".join(lines))
    return wf, plans
