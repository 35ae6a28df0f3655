"""The ``wisefuse`` command line.

Every deliberate error (:class:`~wisefuse_plugins.errors.WiseFuseError`) is printed as one
line with a hint and exits with code 2; ``--debug`` shows the traceback instead.
Heavy imports (Airflow, Prefect, the runtime) happen inside the commands that need them.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from wisefuse_plugins.errors import WiseFuseError

console = Console()
err_console = Console(stderr=True)

TARGET_HELP = (
    "The workflow: an IR file (*.json), or an Airflow DAG or Prefect flow file "
    "(*.py; FILE.py::NAME picks one DAG or flow of several)."
)
DB_HELP = (
    "Profile archive: a SQLAlchemy URL "
    "(default: $WISEFUSE_DB_URL, else sqlite:///$WISEFUSE_HOME/profiles.sqlite)."
)
CodeRoot = Annotated[
    Path | None,
    typer.Option(
        "--code-root",
        help="Folder the workflow's source paths are relative to (default: its own).",
    ),
]

app = typer.Typer(
    name="wisefuse",
    help="Run Airflow DAGs and Prefect flows on AWS Lambda with fusion, bundling and right-sized memory.",
    epilog="Try [bold]wisefuse demo[/] first (local, no AWS account). On your own workflow: "
    "inspect FILE, profile FILE, optimize FILE -o plan.json, then report FILE plan.json "
    "(local) or deploy FILE plan.json (AWS). FILE is an IR file, a DAG file or a flow file; "
    "errors print a hint, --debug the traceback; docs/troubleshooting.md lists them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


class _State:
    debug = False


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


def package_version() -> str:
    try:
        return version("wisefuse-plugins")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def _print_version(value: bool) -> None:
    if value:
        console.print(f"wisefuse-plugins {package_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    _State.debug = debug


@app.command()
def demo(
    quick: Annotated[
        bool,
        typer.Option("--quick", help="Small sizes, fewer runs: a smoke test in about a minute."),
    ] = False,
    prefect: Annotated[
        bool, typer.Option("--prefect", help="Use the Prefect flow instead of the Airflow DAG.")
    ] = False,
    app_name: Annotated[
        str, typer.Option("--app", help="Example app: video, ml or svd.")
    ] = "video",
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the plot, plans, profiles and store.")
    ] = Path("wisefuse-demo"),
    feedback: Annotated[
        int | None,
        typer.Option(
            "--feedback",
            min=0,
            help="Runs per plan WiseFuse checks before keeping it, as optimize --feedback"
            " (default 5, 2 with --quick; 0: the model's plans as they are).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the whole path on a bundled example on the local backend (no AWS account needed)."""
    from wisefuse_plugins.demo import APPS, DemoSettings, run_demo

    if app_name not in APPS:
        raise WiseFuseError(
            f"unknown example app {app_name!r}", hint=f"choose one of {', '.join(APPS)}"
        )
    kw: dict = {"app": app_name, "framework": "prefect" if prefect else "airflow", "out": out}
    if feedback is not None:
        kw["feedback_runs"] = feedback
    run_demo(console, DemoSettings.quick(**kw) if quick else DemoSettings(**kw))


@app.command()
def inspect(
    target: Annotated[
        str,
        typer.Argument(help=TARGET_HELP),
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the normalised IR JSON instead of tables.")
    ] = False,
) -> None:
    """Show a workflow as wisefuse reads it: stages, edges and parallelism."""
    from wisefuse_plugins.render import workflow_view
    from wisefuse_plugins.targets import load_workflow

    wf = load_workflow(target)
    if as_json:
        from wisefuse_plugins.ir import to_json

        sys.stdout.write(to_json(wf))
        return
    console.print(workflow_view(wf))


@app.command()
def profile(
    target: Annotated[str, typer.Argument(help=TARGET_HELP)],
    memory: Annotated[
        str, typer.Option("--memory", help="Memory sizes in MB, comma-separated.")
    ] = "512,1769,3538",
    bundle: Annotated[
        str,
        typer.Option(
            "--bundle",
            help="Bundle sizes of mapped stages, comma-separated; sizes > 1 run where a"
            " bundle gets two threads or more (from 1770 MB) and show how well its"
            " instances share the cores.",
        ),
    ] = "1,2",
    runs: Annotated[
        int, typer.Option("--runs", help="Samples wanted per (stage, memory, bundle).")
    ] = 5,
    backend: Annotated[
        str, typer.Option("--backend", help="Where stages run: local (the embedded Lambda).")
    ] = "local",
    db: Annotated[
        str | None,
        typer.Option("--db", help=DB_HELP),
    ] = None,
    code_root: CodeRoot = None,
    max_instances: Annotated[
        int, typer.Option("--max-instances", help="Instances of a mapped stage sampled per round.")
    ] = 8,
    calibrate: Annotated[
        bool,
        typer.Option(
            "--calibrate/--no-calibrate",
            help="Also measure this machine's store and invocation costs for the model.",
        ),
    ] = True,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Re-run settings that failed before.")
    ] = False,
    preload: Annotated[
        bool,
        typer.Option(
            "--preload/--no-preload",
            help="Fork workers from one process that imported the DAG's or flow's framework: much faster, "
            "but cold starts (INIT) then leave out that import; --no-preload measures real cold starts.",
        ),
    ] = True,
) -> None:
    """Measure each Python stage at several memory and bundle sizes on the local Lambda.

    Samples go to the profile archive (--db); a rerun measures only what is missing."""
    import tempfile

    from rich.table import Table

    from wisefuse_plugins.profiles import ProfileBench, ProfileGrid, open_archive, profile_workflow
    from wisefuse_plugins.targets import load_workflow

    def numbers(text: str, option: str) -> list[int]:
        try:
            values = [int(v) for v in text.replace(" ", "").split(",") if v]
        except ValueError:
            values = []
        if not values or any(v < 1 for v in values):
            raise WiseFuseError(
                f"{option} wants positive integers separated by commas, got {text!r}",
                hint=f"e.g. {option} 512,1769,3538"
                if option == "--memory"
                else f"e.g. {option} 1,2,5",
            )
        return values

    memories, bundles = numbers(memory, "--memory"), numbers(bundle, "--bundle")
    if runs < 1 or max_instances < 1:
        raise WiseFuseError("--runs and --max-instances must be at least 1")
    if backend != "local":
        raise WiseFuseError(
            f"backend {backend!r} cannot profile yet", hint="use --backend local (the default)"
        )
    workflow = load_workflow(target)
    root = code_root or Path(workflow.source.root)
    with open_archive(db) as archive, tempfile.TemporaryDirectory(prefix="wisefuse-") as tmp:
        from wisefuse_plugins.runtime.backends.local import LocalLambda
        from wisefuse_plugins.runtime.backends.units import LocalUnits, preload_for
        from wisefuse_plugins.runtime.store import LocalStore

        store = LocalStore(Path(tmp) / "store")
        modules = preload_for(workflow) if preload else ()
        with LocalLambda(keep_alive_s=600, preload=modules) as lam:
            summary = profile_workflow(
                workflow,
                ProfileGrid(
                    memories=memories,
                    bundles=bundles,
                    runs=runs,
                    max_instances=max_instances,
                    retry_failed=retry_failed,
                ),
                ProfileBench(
                    backend=LocalUnits(lam, store.url, root.resolve(), timeout_s=300),
                    store=store,
                    code_root=root,
                    workdir=Path(tmp) / "units",
                ),
                archive=archive,
                console=console,
            )
            platform = None
            if calibrate:
                from wisefuse_plugins.profiles.calibrate import calibrate_local

                platform = calibrate_local(store, lam, archive=archive)
        stats = archive.stats(workflow)
        shown_url = archive._shown_url()
    sizes = sorted({m for _, m, _ in stats} | set(memories))
    table = Table(title=f"{workflow.name}: function time per instance, P50 / P95 ms (samples)")
    table.add_column("stage")
    table.add_column("bundle", justify="right")
    for m in sizes:
        table.add_column(f"{m} MB", justify="right")
    for sid, b in sorted(
        {(s, b) for s, _, b in stats},
        key=lambda k: (workflow.stages.index(workflow.stage(k[0])), k[1]),
    ):
        cells = []
        for m in sizes:
            got = stats.get((sid, m, b))
            cells.append(f"{got.p50_ms:.1f} / {got.p95_ms:.1f} ({got.count})" if got else "-")
        table.add_row(sid, str(b), *cells)
    console.print(table)
    if summary.failures:
        failed = Table(title="settings that could not run")
        for column in ("stage", "memory", "bundle", "what"):
            failed.add_column(column)
        for f in summary.failures:
            when = " (earlier; --retry-failed to try again)" if f.earlier else ""
            failed.add_row(
                f.setting.stage, f"{f.setting.memory_mb} MB", str(f.setting.bundle_size),
                escape(f"{f.kind}: {f.message[:120]}{when}"),
            )  # fmt: skip
        console.print(failed)
    for sid, why in summary.unprofiled.items():
        console.print(f"[yellow]not profiled:[/] {escape(sid)}: {escape(why)}")
    console.print(
        f"recorded {summary.samples} samples from {summary.invocations} invocations in "
        f"{summary.wall_s:.1f} s ({len(summary.skipped)} settings already measured); "
        f"archive: {shown_url}"
    )
    if platform is not None:
        console.print(f"local platform: {platform.describe()}")


@app.command()
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


@app.command()
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


@app.command()
def deploy(
    target: Annotated[str, typer.Argument(help=TARGET_HELP)],
    plan: Annotated[Path, typer.Argument(help="The plan file (*.json) to deploy.")],
    role: Annotated[str, typer.Option("--role", help="Execution role ARN of the functions.")],
    store: Annotated[str, typer.Option("--store", help="Data store: s3://bucket/prefix.")],
    prefix: Annotated[str, typer.Option("--prefix", help="Prefix of function names.")] = "wf",
    region: Annotated[
        str | None, typer.Option("--region", help="AWS region (default: from the AWS config).")
    ] = None,
    layer: Annotated[
        list[str] | None,
        typer.Option(
            "--layer",
            help="Layer version ARN with the dependencies (repeatable); default: build and "
            "publish them as `wisefuse package` does.",
        ),
    ] = None,
    no_state_machine: Annotated[
        bool, typer.Option("--no-state-machine", help="Deploy the functions only.")
    ] = False,
    sfn_role: Annotated[
        str | None,
        typer.Option("--sfn-role", help="Role Step Functions assumes (default: --role)."),
    ] = None,
    code_root: CodeRoot = None,
) -> None:
    """Deploy a plan to AWS Lambda, with a Step Functions state machine that runs it.

    One function per unit of the plan. Needs the aws extra (boto3) and AWS credentials."""
    from rich.table import Table

    from wisefuse_plugins.deploy import deploy_plan
    from wisefuse_plugins.plan.schema import load_plan
    from wisefuse_plugins.targets import load_workflow

    if not store.startswith("s3://"):
        raise WiseFuseError(
            f"--store must be an S3 URL (s3://bucket/prefix), got {store!r}",
            hint="functions on Lambda read and write their data in S3",
        )
    workflow = load_workflow(target)
    result = deploy_plan(
        workflow,
        load_plan(plan, workflow),
        role_arn=role,
        store_url=store,
        prefix=prefix,
        region=region,
        layers=tuple(layer or ()),
        build_layers=not layer,
        state_machine=not no_state_machine,
        state_machine_role_arn=sfn_role,
        code_root=code_root,
    )
    table = Table(title=f"plan {result.plan_hash} of workflow {workflow.name!r}")
    for column in ("unit", "function version", "change"):
        table.add_column(column)
    for unit, change in result.functions.items():
        what = (
            "created"
            if change.created
            else ", ".join((["code"] if change.code_updated else []) + change.config_updated)
            or "unchanged"
        )
        table.add_row(unit, change.arn, what)
    console.print(table)
    if result.state_machine_arn:
        console.print(f"state machine ({result.state_machine_change}): {result.state_machine_arn}")
        console.print('start a run with the input {"run_id": "<id>"}')
    for path in result.skipped_files:
        err_console.print(f"[yellow]left out of the zip (over 1 MB):[/] {escape(str(path))}")


@app.command()
def package(
    target: Annotated[str, typer.Argument(help=TARGET_HELP)],
    plan: Annotated[Path, typer.Argument(help="The plan file (*.json) to package.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the zips.")] = Path(
        "wisefuse-package"
    ),
    build: Annotated[
        str,
        typer.Option(
            "--build",
            help="Layers: 'host' copies this environment's packages (offline; this machine's "
            "architecture), 'pip' downloads wheels for Lambda, 'auto' copies when they fit.",
        ),
    ] = "auto",
    code_root: CodeRoot = None,
) -> None:
    """Build each unit's Lambda zip and one dependency layer per architecture into a folder.

    The layer holds what the code imports (resolved against this environment), without
    Airflow, Prefect or what the Lambda runtime ships; Lambda's size limits are checked."""
    from rich.table import Table

    from wisefuse_plugins.plan.schema import load_plan
    from wisefuse_plugins.runtime.artifacts import package_plan
    from wisefuse_plugins.targets import load_workflow

    if build not in ("auto", "host", "pip"):
        raise WiseFuseError(f"--build must be auto, host or pip, got {build!r}")
    workflow = load_workflow(target)
    with console.status("resolving and building the dependency layers"):
        built = package_plan(
            workflow,
            load_plan(plan, workflow),
            out,
            code_root=code_root,
            method=build,  # type: ignore[arg-type]
        )
    table = Table(title=f"Lambda packages of workflow {workflow.name!r} in {out}")
    for column in ("file", "zipped MB", "unzipped MB", "what"):
        table.add_column(column)
    for unit, pkg in built.zips.items():
        mb = (len(pkg.data) / 2**20, pkg.unzipped_bytes / 2**20)
        table.add_row(f"{unit}.zip", f"{mb[0]:.2f}", f"{mb[1]:.2f}", f"unit {unit}")
    for arch, layer in built.layers.items():
        mb = (layer.zipped_bytes / 2**20, layer.unzipped_bytes / 2**20)
        what = f"{len(layer.sizes)} packages ({layer.method}); largest: {layer.largest()}"
        table.add_row(f"layer-{arch}.zip", f"{mb[0]:.2f}", f"{mb[1]:.2f}", what)
    console.print(table)
    reasons: dict[str, list[str]] = {}
    for name, reason in sorted(built.resolution.excluded.items()):
        reasons.setdefault(reason, []).append(name)
    for reason, names in reasons.items():
        console.print(f"left out: {', '.join(names)} ({reason})", highlight=False)
    for module, places in sorted(built.resolution.unresolved.items()):
        err_console.print(
            f"[yellow]no installed package provides[/] {escape(module)} "
            f"(imported at {escape(places[0])}): the import fails on Lambda unless guarded"
        )


lambda_app = typer.Typer(
    help="The local Lambda service: the Lambda API on 127.0.0.1 that backend 'local' uses.",
    no_args_is_help=True,
)
app.add_typer(lambda_app, name="lambda")


@lambda_app.command("serve")
def lambda_serve(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: a free one).")] = 9001,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    root: Annotated[
        Path | None,
        typer.Option(help="Folder for its functions (default: $WISEFUSE_HOME/lambda-service)."),
    ] = None,
    concurrency: Annotated[
        int, typer.Option(help="Invocations running, and environments kept warm, at once.")
    ] = 16,
    keep_alive: Annotated[
        float, typer.Option(help="Seconds an idle execution environment stays warm.")
    ] = 900.0,
    idle_timeout: Annotated[
        float | None, typer.Option(help="Stop after this many seconds without a request.")
    ] = None,
) -> None:
    """Run the local Lambda service in the foreground, e.g. next to Airflow or a Prefect worker.

    Point the Airflow hook and the Prefect block at it with
    WISEFUSE_LAMBDA_ENDPOINT=http://HOST:PORT; without it they start one on demand."""
    from wisefuse_plugins.runtime.backends.service.server import serve, wait_until_stopped

    options = {"concurrency_limit": concurrency, "keep_alive_s": keep_alive}
    handle = serve(host, port, root, engine_options=options, idle_s=idle_timeout)
    wait_until_stopped(handle)


@lambda_app.command("status")
def lambda_status() -> None:
    """List the local Lambda services running on this machine."""
    from rich.table import Table

    from wisefuse_plugins.runtime.backends.service import ondemand

    roots = ondemand.running_roots()
    if not roots:
        console.print("no local Lambda service is running")
        return
    table = Table(title="local Lambda services")
    for column in ("root", "pid", "url", "answers"):
        table.add_column(column)
    for root in roots:
        info = ondemand.owner(root) or {}
        url = str(info.get("url", ""))
        answers = "yes" if url and ondemand.ping(url) else "no"
        table.add_row(str(root), str(info.get("pid", "?")), url, answers)
    console.print(table)


@lambda_app.command("stop")
def lambda_stop(
    root: Annotated[
        Path | None, typer.Option(help="Stop only the service of this root (default: all).")
    ] = None,
) -> None:
    """Stop local Lambda services (their warm environments go with them)."""
    from wisefuse_plugins.runtime.backends.service import ondemand

    roots = [root] if root is not None else ondemand.running_roots()
    stopped = [r for r in roots if ondemand.stop(Path(r))]
    console.print(f"stopped {len(stopped)} local Lambda service(s)")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``wisefuse`` console script."""
    try:
        app(args=argv, prog_name="wisefuse")
    except WiseFuseError as err:
        if _State.debug:
            raise
        # escaped: a message is text, not markup ("pip install 'wisefuse-plugins[aws]'")
        err_console.print(
            f"[bold red]error:[/] {escape(err.message)}", highlight=False, soft_wrap=True
        )
        if err.hint:
            err_console.print(f"[bold]hint:[/] {escape(err.hint)}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
