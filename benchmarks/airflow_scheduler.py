"""Benchmark: the example DAGs under a real Airflow scheduler, plain vs rewritten.

Starts a real Airflow 3 deployment (``airflow db migrate``, api-server, scheduler,
dag-processor; LocalExecutor, SQLite, 127.0.0.1; the process management of
tests/live/airflow_live.py, shared with the live tests) and writes each example app of
``airflow/`` into its dags folder with a fused and bundled plan (every one-to-one chain of
Python tasks fused, mapped units in bundles of ``--bundle``, ``chains_plan``): the DAG file
with its drop-in ``rewrite(dag, plan)`` line, and the emitted DAG file. Then, one DAG run at
a time (nothing else running, so a run's figures are its own), each app's plain DAG and its
rewritten forms, ``--repeats`` times, through the REST API. For every run it prints the
run's wall time (the dag_run's start to end), the sum and the longest of its task
durations (task_instance start/end), how many task instances ran, and whether its final
tasks' XComs equal the plain DAG's; then every task's duration, plain next to rewritten.

On the local backend the task processes of the LocalExecutor invoke their units on the
local Lambda service the first unit task started (one per deployment, shared): a unit's
environment stays warm from one task process, and one run, to the next, as on Lambda. A
unit task still pays what every task process pays (the task runner, parsing the DAG file)
plus connecting to the service and checking its function is deployed.

    .venv/bin/python benchmarks/airflow_scheduler.py [--apps video_analytics,ml_pipeline]
        [--forms plain,dropin,emitted] [--repeats 3] [--bundle 2] [--json out.json]
    .venv/bin/python benchmarks/airflow_scheduler.py --quick   # mixed_operators, 1 run each
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE), str(REPO)]

from _common import fmt_table, host_line, same_result, write_json  # noqa: E402

from tests.airflow_helpers import with_dag_variable, write_app  # noqa: E402
from tests.live.airflow_live import AirflowLive, TaskInstance  # noqa: E402

APPS = ("video_analytics", "ml_pipeline", "approx_svd", "mixed_operators")
FORMS = ("plain", "dropin", "emitted")
PLAN = "fused"  # the plan's key: its files are <app>.fused.plan.json, its dag ids <app>__fused
#: The unit invocation's line in a task log (the operator's REPORT-like summary).
INVOKED = re.compile(r": (cold|warm), (\d+) ms \(billed (\d+) ms")


#: Run first, unmeasured: the first task of a deployment waits for the executor's workers.
WARMUP = """
from airflow.sdk import dag, task


@task
def hello():
    return "hello"


@dag(dag_id="bench_warmup", schedule=None)
def bench_warmup():
    hello()


bench_warmup()
"""


def dag_id(app: str, form: str, prefix: str = "") -> str:
    name = prefix + app
    return {"plain": name, "dropin": f"{name}__{PLAN}", "emitted": f"{name}__emitted_{PLAN}"}[form]


def write_apps(
    live: AirflowLive, apps: Sequence[str], bundle: int, prefix: str = ""
) -> dict[str, Any]:
    """Each app's folder (DAG file + drop-in line, emitted file, plan, IR) into the dags
    folder at once, its dag_id prefixed with ``prefix``; returns the apps' workflows."""
    from tests.plans import chains_plan

    staging = live.root / f"staging-{prefix}bench"
    workflows = {}
    for app in apps:
        folder = staging / app
        folder.mkdir(parents=True)
        source = with_dag_variable((REPO / "airflow" / f"{app}.py").read_text())
        if prefix:
            named = f'dag_id="{app}"'
            if named not in source:
                raise ValueError(f"airflow/{app}.py: no {named} to give the prefix {prefix!r}")
            source = source.replace(named, f'dag_id="{prefix}{app}"')

        def fused(wf: Any) -> dict[str, Any]:
            return {PLAN: chains_plan(wf, bundle_size=bundle)}

        workflows[app], _ = write_app(prefix + app, folder, source, fused)
    (staging / f"{prefix}bench_warmup.py").write_text(
        WARMUP.replace('"bench_warmup"', f'"{prefix}bench_warmup"')
    )
    staging.rename(live.dags / f"{prefix}bench")
    return workflows


def finals(workflow: Any) -> list[str]:
    """Task ids of the workflow's sinks: the results a rewritten DAG must give."""
    return [s.name for s in workflow.stages if not workflow.successors(s.id)]


def run_once(live: AirflowLive, dag: str, timeout_s: float) -> dict[str, Any]:
    """One run of ``dag`` on an idle deployment: its state, timings and task instances."""
    run_id = live.trigger(dag)
    state = live.wait_runs([(dag, run_id)], timeout_s=timeout_s)[dag, run_id]
    row = live.query(
        "SELECT start_date, end_date, queued_at FROM dag_run WHERE dag_id=? AND run_id=?",
        (dag, run_id),
    )[0]
    tis = live.task_instances(dag, run_id)
    durations = [ti.duration_s or 0.0 for ti in tis.values()]
    invocations = [
        {"task": _label(ti), "cold": m[1] == "cold", "ms": int(m[2]), "billed_ms": int(m[3])}
        for ti in tis.values()
        for m in INVOKED.finditer(_log(live, dag, run_id, ti))
    ]
    return {
        "dag_id": dag,
        "run_id": run_id,
        "state": state,
        "wall_s": _seconds(row["start_date"], row["end_date"]),
        "queued_s": _seconds(row["queued_at"], row["start_date"]),
        "task_sum_s": sum(durations),
        "task_max_s": max(durations, default=0.0),
        "task_instances": len(tis),
        "invocations": invocations,
        "cold": sum(i["cold"] for i in invocations),
        "unit_ms": sum(i["ms"] for i in invocations),
        "tasks": {_label(ti): ti.duration_s for ti in sorted(tis.values(), key=_order)},
        "failed": sorted(_label(ti) for ti in tis.values() if ti.state != "success"),
    }


def _log(live: AirflowLive, dag: str, run_id: str, ti: TaskInstance) -> str:
    try:
        return live.task_log(dag, run_id, ti.task_id, map_index=ti.map_index)
    except FileNotFoundError:
        return ""


def _order(ti: TaskInstance) -> tuple[str, str, int]:
    return (ti.start_date or "", ti.task_id, ti.map_index)


def _label(ti: TaskInstance) -> str:
    return ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"


def _seconds(start: str | None, end: str | None) -> float | None:
    from tests.live.airflow_live import _unix

    return _unix(end) - _unix(start) if start and end else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", default=",".join(APPS), help="comma-separated example DAGs")
    parser.add_argument(
        "--forms", default="plain,dropin,emitted", help=f"comma-separated, of {FORMS}"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of each DAG (median)")
    parser.add_argument("--bundle", type=int, default=2, help="bundle size of mapped units")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per DAG run")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument(
        "--quick", action="store_true", help="mixed_operators only, one run of each form"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.apps, args.repeats = "mixed_operators", 1
    apps = [a for a in args.apps.split(",") if a]
    forms = [f for f in args.forms.split(",") if f]
    for name, given, known in (("app", apps, APPS), ("form", forms, FORMS)):
        bad = [x for x in given if x not in known]
        if bad:
            parser.error(f"unknown {name} {bad}: choose from {', '.join(known)}")
    if "plain" not in forms:
        forms.insert(0, "plain")  # the reference every result is compared with

    t_all = time.monotonic()
    print(host_line())
    print(
        f"apps {apps}, forms {forms}, plan: chains fused, bundles of {args.bundle}; "
        f"{args.repeats} run(s) of each DAG, one at a time; size small; local backend"
    )
    root = Path(tempfile.mkdtemp(prefix="wisefuse-bench-airflow-"))
    live = AirflowLive(root)
    try:
        live.start()
        print(f"Airflow started in {live.started_s:.1f} s (api-server {live.base_url})")
        runs = measure(live, apps, forms, args.repeats, args.bundle, args.timeout)
    finally:
        live.stop()
        left = live.stray_pids()
        shutil.rmtree(root, ignore_errors=True)
    report(runs, forms)
    total = time.monotonic() - t_all
    print(f"benchmark took {total:.0f} s; processes left after stop: {left or 'none'}")
    write_json(
        args.json,
        {
            "benchmark": "airflow_scheduler",
            "host": host_line(),
            "apps": apps,
            "forms": forms,
            "bundle": args.bundle,
            "repeats": args.repeats,
            "started_s": live.started_s,
            "total_s": total,
            "runs": runs,
        },
    )
    ok = all(r["same_result"] for r in runs) and not left
    return 0 if ok else 1


def measure(
    live: AirflowLive,
    apps: Sequence[str],
    forms: Sequence[str],
    repeats: int,
    bundle: int,
    timeout_s: float,
    prefix: str = "",
) -> list[dict[str, Any]]:
    """Write the apps into the running deployment ``live`` and run each app's forms
    ``repeats`` times, one run at a time; the first form is the reference of the results.
    ``prefix`` renames the DAGs, so that a deployment other DAGs share can run them."""
    t0 = time.monotonic()
    workflows = write_apps(live, apps, bundle, prefix)
    wanted = [dag_id(a, f, prefix) for a in apps for f in forms]
    live.wait_parsed(*wanted, files=sorted((live.dags / f"{prefix}bench").rglob("*.py")))
    print(f"{len(wanted)} DAGs written and parsed in {time.monotonic() - t0:.1f} s")
    live.wait_parsed(f"{prefix}bench_warmup")
    warm = run_once(live, f"{prefix}bench_warmup", timeout_s)
    print(f"warm-up DAG (one task, not measured): {warm['state']} in {warm['wall_s']:.1f} s")
    runs: list[dict[str, Any]] = []
    for app in apps:
        reference: dict[str, Any] | None = None
        for form in forms:
            for rep in range(repeats):
                run = run_once(live, dag_id(app, form, prefix), timeout_s)
                values = {t: _xcom(live, run, t) for t in finals(workflows[app])}
                if reference is None:
                    reference = values
                run |= {"app": app, "form": form, "repeat": rep}
                run["same_result"] = run["state"] == "success" and same_result(values, reference)
                runs.append(run)
                print(
                    f"  {app:16s} {form:8s} #{rep}: {run['state']:7s} "
                    f"{run['wall_s'] or 0:6.1f} s, same result {run['same_result']}",
                    flush=True,
                )
    return runs


def _xcom(live: AirflowLive, run: dict[str, Any], task_id: str) -> Any:
    try:
        return live.xcom(run["dag_id"], run["run_id"], task_id)
    except KeyError:
        return None


def report(runs: list[dict[str, Any]], forms: list[str]) -> None:
    """The runs' table (medians over repeats), then each app's tasks, form by form."""
    print(
        "\nDAG runs (median over repeats; wall: dag_run start to end; tasks: task_instance "
        "durations; units/cold: unit invocations and how many were cold; in units: their "
        "Lambda-equivalent durations)"
    )
    rows = []
    by_case: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in runs:
        by_case.setdefault((r["app"], r["form"]), []).append(r)
    for (app, form), rs in by_case.items():
        plain = by_case[app, "plain"]
        wall = statistics.median(r["wall_s"] or 0 for r in rs)
        base = statistics.median(r["wall_s"] or 0 for r in plain)
        rows.append(
            [
                app,
                form,
                f"{wall:.1f}",
                f"{wall / base:.2f}x" if base else "-",
                f"{statistics.median(r['task_sum_s'] for r in rs):.1f}",
                f"{statistics.median(r['task_max_s'] for r in rs):.1f}",
                rs[0]["task_instances"],
                f"{len(rs[0]['invocations'])}/{rs[0]['cold']}",
                f"{statistics.median(r['unit_ms'] for r in rs) / 1000:.2f}",
                "yes" if all(r["same_result"] for r in rs) else "NO",
            ]
        )
    print(
        fmt_table(
            [
                "app",
                "form",
                "wall s",
                "vs plain",
                "task sum s",
                "longest s",
                "TIs",
                "units/cold",
                "in units s",
                "same",
            ],
            rows,
            left=2,
        )
    )
    for app in dict.fromkeys(r["app"] for r in runs):
        print(f"\n{app}: task durations, s (first run of each form)")
        first = {f: by_case[app, f][0]["tasks"] for f in forms if (app, f) in by_case}
        labels = list(dict.fromkeys(t for tasks in first.values() for t in tasks))
        table = [[t, *(_fmt(first[f].get(t)) for f in first)] for t in labels]
        print(fmt_table(["task", *first], table))


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    raise SystemExit(main())
