"""The root ``wisefuse`` command: its options, its consoles, and how errors are printed.

Every deliberate error (:class:`~wisefuse_plugins.errors.WiseFuseError`) is printed as one
line with a hint and exits with code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import sys
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
