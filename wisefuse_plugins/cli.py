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
