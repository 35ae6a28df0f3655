"""Assets under a real scheduler: a fused unit task updates every asset of its stages.

The corpus DAG ``assets`` (``extract`` updates RAW, ``convert`` reads RATES, ``load``
updates CLEAN) is rewritten with every chain fused: one unit task, ``load``, stands for the
three, so it must carry both outlets (``tasks.unit_settings``: the union), or the asset
event of RAW is lost and what is scheduled on RAW never runs. Deployed with it: the corpus
DAG ``asset_scheduled`` (scheduled on CLEAN) and a DAG scheduled on RAW. The drop-in and the
emitted DAG each run once; the scheduler, not the test, must then start both consumers.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from ..airflow_helpers import plans_for, with_dag_variable, write_app
from .airflow_live import AirflowLive

pytestmark = [pytest.mark.slow]

CORPUS = Path(__file__).resolve().parents[1] / "airflow_corpus" / "dags"
SUBFOLDER = "assets"
RAW = "file:///data/raw/orders.csv"
CLEAN = "file:///data/clean/orders.parquet"

ON_RAW = '''
"""Scheduled on the asset the first stage of the fused unit updates."""

from airflow.sdk import Asset, dag, task


@task
def count_raw() -> str:
    return "raw updated"


@dag(dag_id="live_on_raw", schedule=[Asset("file:///data/raw/orders.csv")])
def live_on_raw():
    count_raw()


live_on_raw()
'''


def _events(live: AirflowLive, dag_id: str) -> set[tuple[str, str]]:
    """(asset URI, task id) of every asset event a DAG's tasks emitted."""
    rows = live.query(
        "SELECT a.uri, e.source_task_id FROM asset_event e JOIN asset a ON a.id = e.asset_id"
        " WHERE e.source_dag_id = ?",
        (dag_id,),
    )
    return {(r["uri"], r["source_task_id"]) for r in rows}


def _consumer_runs(live: AirflowLive, dag_id: str) -> list[Any]:
    return live.query(
        "SELECT run_id, state FROM dag_run WHERE dag_id = ? AND run_type = 'asset_triggered'",
        (dag_id,),
    )


def test_a_fused_unit_updates_every_asset_and_the_scheduler_runs_their_consumers(
    airflow_live: AirflowLive,
) -> None:
    live = airflow_live
    staging = live.root / "staging-assets"
    staging.mkdir()
    # dag ids of their own: tests/live/test_corpus.py deploys the corpus DAGs themselves
    source = with_dag_variable((CORPUS / "assets.py").read_text()).replace(
        'dag_id="assets"', 'dag_id="live_assets"'
    )
    _, plans = write_app("live_assets", staging, source, lambda wf: {"fused": plans_for(wf)["b2"]})
    assert [u.stages for u in plans["fused"].units] == [["extract", "convert", "load"]]
    consumer = (CORPUS / "asset_scheduled.py").read_text()
    (staging / "live_asset_scheduled.py").write_text(
        consumer.replace('dag_id="asset_scheduled"', 'dag_id="live_asset_scheduled"')
    )
    (staging / "live_on_raw.py").write_text(ON_RAW)
    target = live.dags / SUBFOLDER
    os.replace(staging, target)
    producers = ["live_assets__fused", "live_assets__emitted_fused"]
    consumers = ["live_asset_scheduled", "live_on_raw"]
    live.wait_parsed(*producers, *consumers, files=sorted(target.glob("*.py")), timeout_s=300)

    runs = {dag_id: live.trigger(dag_id) for dag_id in producers}
    states = live.wait_runs(runs.items(), timeout_s=300)
    for dag_id, run_id in runs.items():
        tis = live.task_instances(dag_id, run_id)
        assert states[dag_id, run_id] == "success", {k: t.state for k, t in tis.items()}
        assert sorted(tis) == [("load", -1)]  # one task for the three stages
        # the unit task emitted both assets, under the task id the unit takes
        assert _events(live, dag_id) == {(RAW, "load"), (CLEAN, "load")}

    # the scheduler starts each consumer from those events (both producers may count as one)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        found = {d: _consumer_runs(live, d) for d in consumers}
        if all(found.values()) and all(
            r["state"] in ("success", "failed") for rows in found.values() for r in rows
        ):
            break
        time.sleep(1.0)
    else:
        raise AssertionError(f"consumer runs after 180 s: {found}\n{live.log_tails()}")
    for dag_id, rows in found.items():
        assert [r["state"] for r in rows] == ["success"] * len(rows), (dag_id, rows)
