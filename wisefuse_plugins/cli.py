"""The ``wisefuse`` command line.

Every deliberate error (:class:`~wisefuse_plugins.errors.WiseFuseError`) is printed as one
line with a hint and exits with code 2; ``--debug`` shows the traceback instead.
Heavy imports (Airflow, Prefect, the runtime) happen inside the commands that need them.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from wisefuse_plugins.errors import WiseFuseError

console = Console()
err_console = Console(stderr=True)

app = typer.Typer(
    name="wisefuse",
    help="Run Airflow DAGs and Prefect flows on AWS Lambda with fusion, bundling and right-sized memory.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


class _State:
    debug = False


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
def inspect(
    target: Annotated[Path, typer.Argument(help="An IR file (*.json) written by wisefuse.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the normalised IR JSON instead of tables.")
    ] = False,
) -> None:
    """Show a workflow's stages, edges and parallelism."""
    from wisefuse_plugins.render import workflow_view
    from wisefuse_plugins.targets import load_workflow

    wf = load_workflow(target)
    if as_json:
        from wisefuse_plugins.ir import to_json

        sys.stdout.write(to_json(wf))
        return
    console.print(workflow_view(wf))


@app.command()
def demo() -> None:
    """Run the whole path on a bundled example, locally, with no AWS account."""
    from wisefuse_plugins.demo import run_demo

    run_demo(console)


@app.command()
def deploy(
    ir: Annotated[Path, typer.Argument(help="The workflow's IR file (*.json).")],
    plan: Annotated[Path, typer.Argument(help="The plan file (*.json) to deploy.")],
    role: Annotated[str, typer.Option("--role", help="Execution role ARN of the functions.")],
    store: Annotated[str, typer.Option("--store", help="Data store: s3://bucket/prefix.")],
    prefix: Annotated[str, typer.Option("--prefix", help="Prefix of function names.")] = "wf",
    region: Annotated[
        str | None, typer.Option("--region", help="AWS region (default: from the AWS config).")
    ] = None,
    layer: Annotated[
        list[str] | None,
        typer.Option("--layer", help="Layer version ARN with the dependencies (repeatable)."),
    ] = None,
    no_state_machine: Annotated[
        bool, typer.Option("--no-state-machine", help="Deploy the functions only.")
    ] = False,
    sfn_role: Annotated[
        str | None,
        typer.Option("--sfn-role", help="Role Step Functions assumes (default: --role)."),
    ] = None,
    code_root: Annotated[
        Path | None,
        typer.Option("--code-root", help="Folder the IR's source paths are relative to."),
    ] = None,
) -> None:
    """Deploy a plan to AWS: one Lambda function per unit, and a Step Functions machine."""
    from rich.table import Table

    from wisefuse_plugins.optimizer.plan import load_plan
    from wisefuse_plugins.runtime.deploy import deploy_plan
    from wisefuse_plugins.targets import load_workflow

    if not store.startswith("s3://"):
        raise WiseFuseError(
            f"--store must be an S3 URL (s3://bucket/prefix), got {store!r}",
            hint="functions on Lambda read and write their data in S3",
        )
    workflow = load_workflow(ir)
    result = deploy_plan(
        workflow,
        load_plan(plan, workflow),
        role_arn=role,
        store_url=store,
        prefix=prefix,
        region=region,
        layers=tuple(layer or ()),
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
        err_console.print(f"[yellow]left out of the zip (over 1 MB):[/] {path}")


@app.command()
def profile(
    target: Annotated[
        str, typer.Argument(help="An IR file (*.json) or a workflow file (*.py[::ENTRY]).")
    ],
    memory: Annotated[
        str, typer.Option("--memory", help="Memory sizes in MB, comma-separated.")
    ] = "512,1769,3538",
    bundle: Annotated[
        str, typer.Option("--bundle", help="Bundle sizes of mapped stages, comma-separated.")
    ] = "1",
    runs: Annotated[
        int, typer.Option("--runs", help="Samples wanted per (stage, memory, bundle).")
    ] = 5,
    backend: Annotated[
        str, typer.Option("--backend", help="Where stages run: local (the embedded Lambda).")
    ] = "local",
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Profile archive URL (default: $WISEFUSE_DB_URL, else $WISEFUSE_HOME/profiles.sqlite).",
        ),
    ] = None,
    code_root: Annotated[
        Path | None,
        typer.Option("--code-root", help="Folder the stages' source paths are relative to."),
    ] = None,
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
    """Measure each Python stage at several memory and bundle sizes; resumable."""
    import tempfile

    from rich.table import Table

    from wisefuse_plugins.profiles import open_archive, profile_workflow
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
                memories=memories,
                bundles=bundles,
                runs=runs,
                backend=LocalUnits(lam, store.url, root.resolve(), timeout_s=300),
                archive=archive,
                store=store,
                code_root=root,
                max_instances=max_instances,
                retry_failed=retry_failed,
                workdir=Path(tmp) / "units",
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
                f"{f.kind}: {f.message[:120]}{when}",
            )  # fmt: skip
        console.print(failed)
    for sid, why in summary.unprofiled.items():
        console.print(f"[yellow]not profiled:[/] {sid}: {why}")
    console.print(
        f"recorded {summary.samples} samples from {summary.invocations} invocations in "
        f"{summary.wall_s:.1f} s ({len(summary.skipped)} settings already measured); "
        f"archive: {shown_url}"
    )
    if platform is not None:
        console.print(
            f"local platform: store {platform.store_latency_ms:.3f} ms/request, "
            f"{platform.store_bandwidth_mb_s:.0f} MB/s; invocation overhead "
            f"{platform.invoke_overhead_ms:.2f} ms, dispatch {platform.orchestration_ms:.2f} ms"
        )


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``wisefuse`` console script."""
    try:
        app(args=argv, prog_name="wisefuse")
    except WiseFuseError as err:
        if _State.debug:
            raise
        err_console.print(f"[bold red]error:[/] {err.message}", highlight=False, soft_wrap=True)
        if err.hint:
            err_console.print(f"[bold]hint:[/] {err.hint}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
