"""``wisefuse optimize`` and ``wisefuse report``: plan from the profiles, run a plan and
compare it with its prediction."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from wisefuse_plugins.cli.app import DB_HELP, TARGET_HELP, console, err_console
from wisefuse_plugins.errors import WiseFuseError


def _seconds(value: float) -> str:
    """Milliseconds shown; below that, 2 significant digits (an SLO of 0.0001 s is not 0.000 s)."""
    return f"{value:.3f}" if value >= 0.001 else f"{value:.2g}"


@contextlib.contextmanager
def _silenced(logger_name: str) -> Iterator[None]:
    """Mute a library logger while the CLI says the same thing itself, in its own words."""
    logger = logging.getLogger(logger_name)
    before, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = before


def optimize(
    target: Annotated[str, typer.Argument(help=TARGET_HELP)],
    slo: Annotated[
        str,
        typer.Option(
            "--slo",
            help="P95 objective: seconds (12.5) or a multiple (1.5x) of User-Max's P95, "
            "User-Max being every stage alone at the largest memory.",
        ),
    ] = "1.5x",
    headroom: Annotated[
        float,
        typer.Option(
            "--headroom",
            min=0.0,
            max=0.9,
            help="Plan for a predicted P95 this fraction under the SLO, for the model's own"
            " error (0.15: 15% under; 0 to plan right at it).",
        ),
    ] = 0.15,  # = optimizer.search.SLO_HEADROOM (a test checks); not imported: --help stays light
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the plan.")] = Path(
        "plan.json"
    ),
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot", help="Also save the cost / P95 Pareto frontier, with the baselines, as PNG."
        ),
    ] = None,
    backend: Annotated[
        str,
        typer.Option(
            "--backend",
            help="Plan with the profiles and platform costs measured on this backend "
            "(wisefuse profile records 'local').",
        ),
    ] = "local",
    db: Annotated[str | None, typer.Option("--db", help=DB_HELP)] = None,
    observe_run: Annotated[
        bool,
        typer.Option(
            "--observe/--no-observe",
            help="Run the workflow once in-process to learn mapped stages' sizes when they are only guessed.",
        ),
    ] = True,
    feedback: Annotated[
        int,
        typer.Option(
            "--feedback",
            min=0,
            help="Run the chosen plan this many times on the local Lambda (after a warm-up),"
            " correct the model with each unit's measured time and plan again, up to 3 plans;"
            " keep the cheapest that measured within the SLO (a relative SLO is then of"
            " User-Max's measured P95). 0: the model's plan only.",
        ),
    ] = 0,
) -> None:
    """Choose the cheapest plan whose predicted P95 meets the SLO; write it as JSON.

    Needs profiles of every Python stage of the current code (wisefuse profile)."""
    from wisefuse_plugins.model.correct import changed
    from wisefuse_plugins.model.predict import Model
    from wisefuse_plugins.model.profile import Platform
    from wisefuse_plugins.optimizer.baselines import BASELINES
    from wisefuse_plugins.optimizer.search import baseline, frontier
    from wisefuse_plugins.optimizer.search import optimize as plan_for
    from wisefuse_plugins.plan.schema import dump_plan
    from wisefuse_plugins.profiles import open_archive
    from wisefuse_plugins.render import plan_table
    from wisefuse_plugins.targets import load_workflow

    if feedback and backend != "local":
        raise WiseFuseError(
            f"--feedback runs plans on the local Lambda, but the profiles are {backend!r}'s",
            hint="drop --feedback, or plan with --backend local",
        )
    _check_writable(out, "--out")  # before the work: a plan that cannot be written is lost
    workflow = load_workflow(target)
    if observe_run and any(
        s.mapped and s.parallelism_source == "expected" for s in workflow.stages
    ):
        from wisefuse_plugins.runtime.observe import observe

        with console.status("running the workflow once to learn its mapped stages' sizes"):
            workflow, _ = observe(workflow)
    with open_archive(db) as archive:
        profiles = archive.profiles_for(workflow, backend=backend)
        platform = archive.load_platform(backend)
        learned = archive.corrections_for(workflow, backend=backend)
    model = Model(profiles, platform or Platform())
    model.check(workflow)  # missing or stale profiles: that error alone, before any warning
    if platform is None:
        _warn_uncalibrated(backend)
    if learned:  # earlier --feedback runs of this code, against these profiles
        model = model.corrected(learned)
        console.print(
            f"the model takes the measured times of {len(learned)} units from earlier --feedback"
            " runs (profiling the workflow again drops them)",
            highlight=False,
        )
    with _silenced(plan_for.__module__):  # its "no plan meets the SLO" is printed below
        if feedback:
            planned, model = _tuned(workflow, model, slo, headroom, feedback)
            with open_archive(db) as archive:  # what these runs measured, for later plans
                archive.save_corrections(
                    workflow, changed(learned, model.corrections), backend=backend
                )
        else:
            planned = plan_for(workflow, model, slo, headroom=headroom)
    compare = [baseline(workflow, model, name, planned.slo_s) for name in ("user-min", "user-max")]
    console.print(plan_table(planned, compare))
    if feedback and not planned.meets_slo:
        err_console.print(
            f"[yellow]no plan measured within the SLO of {_seconds(planned.slo_s)} s;[/] this is"
            f" the fastest measured (P95 {_seconds(planned.plan.meta['measured_p95_s'])} s)",
            highlight=False,
            soft_wrap=True,
        )
    elif not planned.meets_slo:
        err_console.print(
            f"[yellow]no plan meets the SLO of {_seconds(planned.slo_s)} s;[/] this is the fastest "
            f"found (P95 {_seconds(planned.prediction.p95_s)} s)",
            highlight=False,
            soft_wrap=True,
        )
    path = dump_plan(planned.plan, out)
    console.print(f"plan written to {path}")
    from wisefuse_plugins.providers.airflow.ahead import prepare_target

    with console.status("preparing the drop-in's layout for the DAG's first parse"):
        prepared = prepare_target(target, path)
    for line in prepared:  # a DAG file with the drop-in line: its next parse is a fast one
        console.print(line, highlight=False, soft_wrap=True)
    if plot is not None:
        from wisefuse_plugins.plots import frontier_plot

        with console.status("computing the Pareto frontier"), _silenced(plan_for.__module__):
            points = frontier(workflow, model)
            others = [baseline(workflow, model, name) for name in BASELINES]
            frontier_plot(
                points, others, plot, title=f"{workflow.name}: cost vs P95", slos=[planned.slo_s]
            )
        console.print(f"Pareto frontier saved to {plot}")


def _platform(archive, backend: str):
    """The backend's calibrated platform, or the default constants with a visible warning:
    planning from constants measured elsewhere is allowed, but never silently."""
    from wisefuse_plugins.model.profile import Platform

    platform = archive.load_platform(backend)
    if platform is not None:
        return platform
    _warn_uncalibrated(backend)
    return Platform()


def _warn_uncalibrated(backend: str) -> None:
    fix = (
        "calibrate it with: wisefuse profile TARGET --backend local --calibrate"
        if backend == "local"
        else "only the local backend can be calibrated yet (wisefuse profile TARGET --calibrate)"
    )
    err_console.print(
        f"[yellow]warning:[/] the {escape(backend)} backend was never calibrated in this"
        " archive: predicting with the default platform constants (store and invocation"
        f" costs); {fix}",
        highlight=False,
        soft_wrap=True,
    )


def _check_writable(path: Path, option: str) -> None:
    """Raise unless ``path`` can be written (its missing folders are made when it is)."""
    import os

    if path.is_dir():
        raise WiseFuseError(
            f"{option} {path} is a folder, not a file",
            hint=f"give a file name, e.g. {option} {path / 'plan.json'}",
        )
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise WiseFuseError(
            f"{option} {path} cannot be written: {folder} is a file, not a folder",
            hint=f"write elsewhere, or move {folder} away",
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise WiseFuseError(
            f"{option} {path} cannot be written: no permission to write in {folder}",
            hint=f"write elsewhere, or make {folder} writable",
        )


def _tuned(workflow, model, slo: str, headroom: float, runs: int):
    """optimize --feedback: :func:`~wisefuse_plugins.optimizer.feedback.tune` with plans
    measured on a local Lambda; prints each plan measured. (planned, corrected model)."""
    import tempfile

    from wisefuse_plugins.optimizer.feedback import ROUNDS, tune
    from wisefuse_plugins.optimizer.search import baseline
    from wisefuse_plugins.optimizer.space import is_relative, parse_slo
    from wisefuse_plugins.render import plan_line
    from wisefuse_plugins.runtime.backends.local import LocalLambda
    from wisefuse_plugins.runtime.backends.units import LocalUnits, preload_for
    from wisefuse_plugins.runtime.measure import WARM_WORKERS, concurrency_for, measure
    from wisefuse_plugins.runtime.store import LocalStore

    lam_ctx = LocalLambda(preload=preload_for(workflow), concurrency_limit=WARM_WORKERS)
    with tempfile.TemporaryDirectory(prefix="wisefuse-feedback-") as tmp, lam_ctx as lam:
        store = LocalStore(Path(tmp) / "store")
        units = LocalUnits(lam, store.url, Path(workflow.source.root), timeout_s=900)

        def run(plan):
            return measure(
                workflow, plan, units, store, workdir=Path(tmp) / "units", runs=runs,
                orchestration_s=model.platform.orchestration_ms / 1000,
                max_concurrency=concurrency_for(plan, lam.host.cores),
                by_value=int(model.platform.by_value_bytes),
            )  # fmt: skip

        if is_relative(slo):
            # plans are judged by runs, so the SLO is a multiple of what User-Max *ran*,
            # as a user sets it, not of the model's prediction for it
            umax = baseline(workflow, model, "user-max")
            with console.status(f"running User-Max's plan 1 + {runs} times"):
                ref = run(umax.plan).p95_s
            seconds = parse_slo(slo, ref)
            console.print(
                f"User-Max measured P95 {_seconds(ref)} s in {runs} runs (predicted"
                f" {_seconds(umax.prediction.p95_s)} s): SLO {slo} = {_seconds(seconds)} s",
                highlight=False,
            )
            slo = seconds
        with console.status(
            f"planning, then running each plan 1 + {runs} times (<= {ROUNDS} plans, then a"
            " probe and a rival's plan where they are cheaper)"
        ):
            tuned = tune(workflow, model, slo, run, headroom=headroom)
    for n, t in enumerate(tuned.trials, 1):
        verdict = f"[green]{t.verdict}[/]" if t.accepted else f"[red]{t.verdict}[/]"
        console.print(
            f"feedback {n}: {escape(plan_line(t.plan))} P95 predicted {t.predicted_p95_s:.3f} s, measured"
            f" {t.p95_s:.3f} s in {t.runs} runs ({verdict}); cost / 1k runs {t.cost_usd * 1000:.4f} USD",
            highlight=False,
        )
    return tuned.planned, tuned.model


def report(
    target: Annotated[str, typer.Argument(help=TARGET_HELP)],
    plan_file: Annotated[Path, typer.Argument(help="The plan (JSON) to run and report on.")],
    runs: Annotated[
        int, typer.Option("--runs", help="Measured runs (after one warm-up run).")
    ] = 10,
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="The page to write: .md (Markdown) or .html; PNGs go beside it."
        ),
    ] = Path("report.md"),
    db: Annotated[str | None, typer.Option("--db", help=DB_HELP)] = None,
) -> None:
    """Run a plan on the local Lambda and write predicted vs measured P95 and cost, with plots.

    Predictions come from the same profiles as optimize (--db)."""
    import tempfile

    from wisefuse_plugins.model.predict import Model
    from wisefuse_plugins.plan.schema import load_plan
    from wisefuse_plugins.profiles import open_archive
    from wisefuse_plugins.report import Report, write
    from wisefuse_plugins.runtime.backends.local import LocalLambda
    from wisefuse_plugins.runtime.backends.units import LocalUnits, preload_for
    from wisefuse_plugins.runtime.measure import WARM_WORKERS, measure
    from wisefuse_plugins.runtime.store import LocalStore
    from wisefuse_plugins.targets import load_workflow

    if runs < 1:
        raise WiseFuseError("--runs must be at least 1")
    if out.suffix not in (".md", ".html"):
        raise WiseFuseError(
            f"cannot write a report as {out.suffix or 'a file without suffix'}",
            hint="use .md or .html",
        )
    workflow = load_workflow(target)
    if any(s.mapped and s.parallelism_source == "expected" for s in workflow.stages):
        from wisefuse_plugins.runtime.observe import observe

        workflow, _ = observe(workflow)
    plan = load_plan(plan_file, workflow)
    with open_archive(db) as archive:
        model = Model(archive.profiles_for(workflow), _platform(archive, "local"))
    prediction = model.predict(workflow, plan)
    lam_ctx = LocalLambda(preload=preload_for(workflow), concurrency_limit=WARM_WORKERS)
    with tempfile.TemporaryDirectory(prefix="wisefuse-report-") as tmp, lam_ctx as lam:
        store = LocalStore(Path(tmp) / "store")
        units = LocalUnits(lam, store.url, Path(workflow.source.root), timeout_s=900)
        with console.status(f"running the plan: 1 warm-up + {runs} runs"):
            measured = measure(
                workflow, plan, units, store, workdir=Path(tmp) / "units", runs=runs,
                by_value=int(model.platform.by_value_bytes),
            )  # fmt: skip
    path = write(Report(workflow, plan, prediction, measured, measured.unit_ms), out)
    console.print(
        f"P95 predicted {prediction.p95_s:.3f} s, measured {measured.p95_s:.3f} s; cost per 1,000 runs "
        f"predicted ${prediction.cost_usd * 1000:.4f}, measured ${measured.mean_cost_usd * 1000:.4f}"
    )
    console.print(f"report written to {path}")
