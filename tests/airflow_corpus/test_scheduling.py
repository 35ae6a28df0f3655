"""Scheduling settings on the Airflow side: the adapter records them, and a plan that fuses
tasks whose settings differ is refused by the drop-in ``rewrite`` and the emitter.

Input: the corpus DAG ``dags/pools_queues.py`` (``parse`` and ``crunch`` differ only in
their pool). What the optimizer makes of its IR is in ``tests/optimizer/test_scheduling.py``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from wisefuse_plugins.ir import IRError
from wisefuse_plugins.plan.schema import Plan, Unit, hashes_of

pytestmark = pytest.mark.airflow

DAGS = Path(__file__).resolve().parent / "dags"
REFUSED = (
    "unit 'parse-crunch' fuses stages whose scheduling settings differ: pool is 'io_pool' in "
    "'parse' and the default in 'crunch'"
)


@pytest.fixture(scope="module")
def pools_queues():
    from wisefuse_plugins.adapters.airflow import from_dag, load_dag_file

    dag = load_dag_file(DAGS / "pools_queues.py")
    return dag, from_dag(dag)


def fusing(wf, stages: list[str]) -> Plan:
    units = [Unit(id="-".join(stages), stages=stages)]
    units += [Unit(id=s.id, stages=[s.id]) for s in wf.python_stages if s.id not in stages]
    return Plan(workflow=wf.name, units=units, code_hashes=hashes_of(wf))


def test_the_ir_records_non_default_scheduling_settings(pools_queues):
    _, wf = pools_queues
    assert wf.stage("parse").meta["scheduling"] == {
        "owner": "analytics",  # from default_args: Airflow's default owner is "airflow"
        "pool": "io_pool",
        "pool_slots": 2,
        "priority_weight": 5,
        "queue": "io",
        "weight_rule": "absolute",
    }
    assert wf.stage("crunch_again").meta["scheduling"]["executor_config"] == {"cpu": 2}


def test_settings_json_cannot_carry_are_recorded_as_text_equal_values_share(tmp_path: Path):
    from wisefuse_plugins.adapters.airflow import workflow_from_file

    (tmp_path / "configs.py").write_text(
        "from airflow.sdk import dag, task\n\n\n"
        '@task(executor_config={"b": (1, 2), "a": {"x"}})\n'
        "def first() -> int:\n    return 1\n\n\n"
        '@task(executor_config={"a": {"x"}, "b": (1, 2)})\n'
        "def second(x: int) -> int:\n    return x\n\n\n"
        '@dag(dag_id="configs", schedule=None)\n'
        "def configs():\n    second(first())\n\n\n"
        "configs()\n"
    )
    wf = workflow_from_file(tmp_path / "configs.py")
    got = [wf.stage(s).meta["scheduling"] for s in ("first", "second")]
    assert got[0] == got[1] == {"executor_config": "{'a': {'x'}, 'b': [1, 2]}"}


def test_the_emitter_refuses_a_plan_fusing_them(pools_queues):
    from wisefuse_plugins.emitters.airflow import emit_dag

    dag, wf = pools_queues
    with pytest.raises(IRError) as err:
        emit_dag(wf, fusing(wf, ["parse", "crunch"]), dag=dag)
    assert REFUSED in str(err.value) and "split the unit" in str(err.value)


def test_the_drop_in_runs_the_dag_unchanged_and_says_why(pools_queues, caplog):
    from wisefuse_plugins.airflow import rewrite

    dag, wf = pools_queues
    with caplog.at_level(logging.WARNING, logger="wisefuse_plugins.airflow"):
        assert rewrite(dag, fusing(wf, ["parse", "crunch"])) is dag
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "runs unchanged" in text and REFUSED in text and "split the unit" in text
