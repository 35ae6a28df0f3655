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
