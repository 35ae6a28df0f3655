"""``wisefuse demo``: the whole path on a bundled example, on the local backend.

Load the example DAG (or flow) -> show its IR -> run it once to learn its parallelism ->
calibrate the local backend -> profile every stage at a few memory sizes -> plan it at
three SLOs (multiples of User-Max's predicted P95) with WiseFuse and with every baseline ->
run each plan for real on the embedded Lambda -> one table of measured P95 and cost per
1,000 runs, with the SLO met or not -> the Pareto plot, the plans and the rewritten DAG.

Everything happens under ``--out`` (default ``./wisefuse-demo``), including the profile
archive and the store, so a demo never touches ``~/.wisefuse``. It needs the repository's
example DAGs and flows (run it from a clone).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from wisefuse_plugins.errors import WiseFuseError

REPO = Path(__file__).resolve().parent.parent
APPS = {
    "video": ("video_analytics.py", "video_analytics"),
    "ml": ("ml_pipeline.py", "ml_pipeline"),
    "svd": ("approx_svd.py", "approx_svd"),
}
PLANNERS = ("user-min", "user-max", "power-tuning", "sonic", "photons", "faastlane")
SLOS = ("1.5x", "2.5x", "5x")


@dataclass
class DemoSettings:
    """What the demo runs; ``quick()`` is the smoke-test size."""

    app: str = "video"
    framework: str = "airflow"
    out: Path = Path("wisefuse-demo")
    size: str = "default"
    memories: tuple[int, ...] = (512, 1769, 3538)
    profile_runs: int = 3
    runs: int = 3
    slos: tuple[str, ...] = SLOS
    planners: tuple[str, ...] = PLANNERS
    #: runs per plan WiseFuse checks before keeping it (optimizer.feedback); 0: none
    feedback_runs: int = 5

    @classmethod
    def quick(cls, **kw: Any) -> DemoSettings:
        kw.setdefault("feedback_runs", 2)
        return cls(size="small", memories=(1024, 3538), profile_runs=2, runs=2, **kw)


@dataclass
class Row:
    name: str
    slo_s: float | None
    predicted_p95_s: float
    predicted_cost: float
    measured_p95_s: float
    measured_cost: float
    runs: int
    correct: bool

    @property
    def met(self) -> bool | None:
        return None if self.slo_s is None else self.measured_p95_s <= self.slo_s


@dataclass
class DemoResult:
    rows: list[Row] = field(default_factory=list)
    plot: Path | None = None
    dag_file: Path | None = None
    plans: list[Path] = field(default_factory=list)
    seconds: float = 0.0


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables for a block and restore them after (the benchmarks use it too)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _load(settings: DemoSettings):
    file, entry = APPS[settings.app]
    folder = REPO / settings.framework
    path = folder / file
    if not path.exists():
        raise WiseFuseError(
            f"the demo's example {path} is not here",
            hint="run `wisefuse demo` from a clone of the repository",
        )
    if settings.framework == "airflow":
        from wisefuse_plugins.adapters.airflow import workflow_from_file

        return workflow_from_file(path)
    from wisefuse_plugins.adapters.prefect import load_flow_file, trace_flow

    return trace_flow(load_flow_file(path, entry), **_prefect_size(settings))


def _prefect_size(settings: DemoSettings) -> dict[str, Any]:
    import importlib

    module = importlib.import_module(
        f"examples.apps.{ {'video': 'video', 'ml': 'ml_pipeline', 'svd': 'svd'}[settings.app] }"
    )
    return dict(module.SIZES[settings.size])


def run_demo(console: Console, settings: DemoSettings | None = None) -> DemoResult:
    """Run the demo and print as it goes; returns the table's rows and the files written."""
    settings = settings or DemoSettings()
    out = settings.out.resolve()
    home = out / "home"
    home.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with environment(
        WISEFUSE_HOME=str(home),
        WISEFUSE_EXAMPLE_SIZE=settings.size,
        WISEFUSE_DB_URL=f"sqlite:///{home / 'profiles.sqlite'}",
    ):
        return _run(console, settings, out, home, started)


def _kind(trial) -> str:
    """What a feedback trial was, when not a plan of WiseFuse's rounds."""
    if trial.rival:
        return f", {trial.rival}'s plan"
    return ", a probe" if trial.probe else ""


def _step(console: Console, n: int, text: str) -> None:
    console.rule(f"[bold]{n}. {text}")


def _run(
    console: Console, settings: DemoSettings, out: Path, home: Path, started: float
) -> DemoResult:
    from wisefuse_plugins.model.predict import Model
    from wisefuse_plugins.optimizer.feedback import MARGIN_SHARE, tune
    from wisefuse_plugins.optimizer.search import SLO_HEADROOM, baseline, frontier, optimize
    from wisefuse_plugins.optimizer.space import parse_slo
    from wisefuse_plugins.plan.schema import dump_plan
    from wisefuse_plugins.plots import frontier_plot
    from wisefuse_plugins.profiles.archive import open_archive
    from wisefuse_plugins.profiles.calibrate import calibrate_local
    from wisefuse_plugins.profiles.profiler import ProfileBench, ProfileGrid, profile_workflow
    from wisefuse_plugins.render import plan_table, workflow_view
    from wisefuse_plugins.runtime import store as st
    from wisefuse_plugins.runtime.backends.local import LocalLambda
    from wisefuse_plugins.runtime.backends.units import LocalUnits, preload_for
    from wisefuse_plugins.runtime.compare import same_outputs
    from wisefuse_plugins.runtime.measure import WARM_WORKERS, concurrency_for, measure
    from wisefuse_plugins.runtime.observe import observe

    result = DemoResult()
    _step(
        console,
        1,
        f"load the {settings.app} example ({settings.framework}, size {settings.size!r})",
    )
    workflow = _load(settings)
    with console.status("running it once, in-process, to learn how wide its mapped stages are"):
        workflow, expected = observe(workflow)
    console.print(workflow_view(workflow))

    store = st.LocalStore(home / "store")
    archive = open_archive()
    code_root = Path(workflow.source.root)
    lam_ctx = LocalLambda(
        keep_alive_s=900, concurrency_limit=WARM_WORKERS, preload=preload_for(workflow)
    )
    with lam_ctx as lam:
        units = LocalUnits(lam, store.url, code_root, timeout_s=600)
        _step(console, 2, "calibrate the local Lambda and profile every stage")
        platform = calibrate_local(store, lam, archive=archive)
        console.print(f"local platform: {platform.describe()}")
        summary = profile_workflow(
            workflow,
            ProfileGrid(
                memories=settings.memories,
                bundles=(1, 2),  # 2: how the mapped stages share cores (where 2 threads run)
                runs=settings.profile_runs,
            ),
            ProfileBench(
                backend=units, store=store, code_root=code_root, workdir=out / "profile-units"
            ),
            archive=archive,
            console=console,
        )
        for failure in getattr(summary, "failures", []):
            console.print(f"[yellow]could not run[/] {failure}")
        model = Model(archive.profiles_for(workflow), platform)

        checked = (
            f", each plan checked by {settings.feedback_runs} runs"
            if settings.feedback_runs
            else ""
        )
        _step(console, 3, f"plan at SLOs {', '.join(settings.slos)} of User-Max's P95{checked}")
        planned = []
        umax = baseline(workflow, model, "user-max")
        user_max_p95 = umax.prediction.p95_s
        slo_of: dict[str, float] = {}

        def check(plan):  # WiseFuse's feedback runs (optimizer.feedback.tune)
            return measure(
                workflow, plan, units, store, workdir=out / "units" / "feedback",
                runs=settings.feedback_runs,
                max_concurrency=concurrency_for(plan, os.cpu_count() or 1),
                by_value=int(model.platform.by_value_bytes),
            )  # fmt: skip

        if settings.feedback_runs:
            # the plans are judged by runs: the SLOs are multiples of what User-Max ran
            user_max_p95 = check(umax.plan).p95_s
            console.print(
                f"  User-Max measured P95 {user_max_p95:.2f} s in {settings.feedback_runs} runs"
                f" (predicted {umax.prediction.p95_s:.2f} s): "
                + ", ".join(
                    f"{slo} = {parse_slo(slo, user_max_p95):.2f} s" for slo in settings.slos
                ),
                highlight=False,
            )
        for slo in settings.slos:
            slo_of[slo] = parse_slo(slo, user_max_p95)
            # aim under the SLO by the model's measured error: the table judges measured P95
            if settings.feedback_runs:
                tuned = tune(workflow, model, slo_of[slo], check, headroom=SLO_HEADROOM)
                ours = tuned.planned
                for n, t in enumerate(tuned.trials, 1):
                    bar = SLO_HEADROOM if t.probe else SLO_HEADROOM * MARGIN_SHARE
                    console.print(
                        f"  {slo}, plan {n}: P95 predicted {t.predicted_p95_s:.2f} s, measured"
                        f" {t.p95_s:.2f} s in {t.runs} runs ({'within' if t.accepted else 'over'} the SLO"
                        f" less {bar:.1%}{_kind(t)})",
                        highlight=False,
                    )
            else:
                ours = optimize(workflow, model, slo_of[slo], headroom=SLO_HEADROOM)
            planned.append((f"wisefuse @ {slo}", ours))
            path = dump_plan(ours.plan, out / f"plan-{slo}.json")
            result.plans.append(path)
        others = [(name, baseline(workflow, model, name)) for name in settings.planners]
        console.print(plan_table(planned[0][1], [p for _, p in others]))

        _step(
            console, 4, f"run every plan for real: 1 warm-up + {settings.runs} measured runs each"
        )
        for name, p in [*others, *planned]:
            workdir = out / "units" / name.replace(" ", "").replace("@", "-")
            m = measure(
                workflow, p.plan, units, store, workdir=workdir, runs=settings.runs,
                max_concurrency=concurrency_for(p.plan, os.cpu_count() or 1),
                by_value=int(model.platform.by_value_bytes),
            )  # fmt: skip
            slo = slo_of[name.rsplit(" ", 1)[1]] if name.startswith("wisefuse") else None
            result.rows.append(
                Row(
                    name,
                    slo,
                    p.prediction.p95_s,
                    p.prediction.cost_usd,
                    m.p95_s,
                    m.mean_cost_usd,
                    m.runs,
                    same_outputs(m.outputs, expected),
                )
            )
            cold = f" ({m.cold_starts} cold starts in them)" if m.cold_starts else ""
            console.print(
                f"  {name}: measured P95 {m.p95_s:.2f} s, ${m.mean_cost_usd * 1000:.4f} per"
                f" 1,000 runs{cold}"
            )

    _step(console, 5, "results")
    console.print(results_table(result.rows, settings))
    with console.status("drawing the cost / P95 frontier"):
        points = frontier(workflow, model, points=8)
        result.plot = frontier_plot(
            points, [p for _, p in others], out / "pareto.png", title=f"{workflow.name}: predicted cost vs P95",
            slos=list(slo_of.values()),
        )  # fmt: skip
    result.dag_file = _emit(workflow, planned[1][1].plan, out, settings)
    result.seconds = time.perf_counter() - started
    summary_path = write_summary(result.rows, out / "summary.json")
    console.print(f"Pareto plot: {result.plot}")
    console.print(f"the table as JSON: {summary_path}")
    console.print(f"plans: {', '.join(str(p) for p in result.plans)}")
    if result.dag_file:
        console.print(
            f"rewritten {settings.framework} file (plan at {settings.slos[1]}): {result.dag_file}"
        )
    console.print(f"profiles and store: {home}   ({result.seconds:.0f} s in all)")
    return result


def write_summary(rows: list[Row], path: Path) -> Path:
    """The results table as JSON, for scripts: ``{"rows": [{"planner", "slo", "p95_s",
    "cost_per_1k", "slo_met", ...}]}`` (``slo`` and ``slo_met`` are None for baselines,
    which plan for no SLO)."""
    import json

    out = []
    for r in rows:
        planner, _, slo = r.name.partition(" @ ")
        out.append(
            {
                "planner": planner,
                "slo": slo or None,
                "slo_s": r.slo_s,
                "p95_s": r.measured_p95_s,
                "cost_per_1k": r.measured_cost * 1000,
                "slo_met": r.met,
                "predicted_p95_s": r.predicted_p95_s,
                "predicted_cost_per_1k": r.predicted_cost * 1000,
                "runs": r.runs,
                "same_result": r.correct,
            }
        )
    path.write_text(json.dumps({"rows": out}, indent=2) + "\n", encoding="utf-8")
    return path


def _emit(workflow, plan, out: Path, settings: DemoSettings) -> Path | None:
    """The rewritten DAG/flow file, when the framework's emitter is available."""
    try:
        if settings.framework == "airflow":
            from wisefuse_plugins.emitters.airflow import emit_dag as emit
        else:
            from wisefuse_plugins.emitters.prefect import emit_flow as emit
    except ImportError:
        return None
    path = out / f"{workflow.name}_wisefuse.py"
    path.write_text(emit(workflow, plan))
    return path


def results_table(rows: list[Row], settings: DemoSettings) -> Table:
    table = Table(
        title=f"measured on the local Lambda ({settings.runs} runs per plan after a warm-up)"
    )
    for col in (
        "plan",
        "SLO (s)",
        "predicted P95 (s)",
        "measured P95 (s)",
        "cost / 1k runs",
        "SLO met",
        "same result",
    ):
        table.add_column(col, justify="left" if col == "plan" else "right")
    for r in rows:
        met = "-" if r.met is None else ("[green]yes[/]" if r.met else "[red]no[/]")
        table.add_row(
            r.name,
            "-" if r.slo_s is None else f"{r.slo_s:.2f}",
            f"{r.predicted_p95_s:.2f}",
            f"{r.measured_p95_s:.2f}",
            f"${r.measured_cost * 1000:.4f}",
            met,
            "yes" if r.correct else "[red]NO[/]",
        )
    return table
