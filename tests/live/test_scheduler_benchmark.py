"""``benchmarks/airflow_scheduler.py`` measures on the session's deployment.

The benchmark's ``main`` starts a deployment of its own; here its ``measure`` runs on the
one the other live tests share (its DAGs renamed with a prefix), so the suite starts
Airflow once. Only that it runs end to end and reads its figures: their values are what
the benchmark is for (docs/benchmarks.md).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from .airflow_live import AirflowLive

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "airflow_scheduler.py"


def _benchmark():
    spec = importlib.util.spec_from_file_location("_bench_airflow_scheduler", BENCHMARK)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_scheduler_benchmark_measures_every_form(airflow_live: AirflowLive, capsys) -> None:
    bench = _benchmark()
    forms = ["plain", "dropin", "emitted"]
    runs = bench.measure(airflow_live, ["mixed_operators"], forms, 1, 2, 600.0, prefix="sb_")
    bench.report(runs, forms)
    out = capsys.readouterr().out
    assert "DAG runs (median over repeats" in out and "mixed_operators" in out
    assert [(r["app"], r["form"], r["dag_id"]) for r in runs] == [
        ("mixed_operators", "plain", "sb_mixed_operators"),
        ("mixed_operators", "dropin", "sb_mixed_operators__fused"),
        ("mixed_operators", "emitted", "sb_mixed_operators__emitted_fused"),
    ]
    assert all(r["state"] == "success" and r["same_result"] for r in runs), runs
    assert all(r["wall_s"] > 0 and r["task_instances"] > 0 for r in runs)
    rewritten = [r for r in runs if r["form"] != "plain"]
    assert all(r["invocations"] and r["unit_ms"] > 0 for r in rewritten)  # read from the task logs
