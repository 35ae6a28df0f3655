"""``wisefuse demo`` and ``wisefuse inspect``: try the whole path, read a workflow."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from wisefuse_plugins.cli.app import TARGET_HELP, console
from wisefuse_plugins.errors import WiseFuseError


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
