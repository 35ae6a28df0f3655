"""``wisefuse deploy`` and ``wisefuse package``: a plan's Lambda functions, on AWS or as zips."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from wisefuse_plugins.cli.app import TARGET_HELP, CodeRoot, console, err_console
from wisefuse_plugins.errors import WiseFuseError


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
