"""``wisefuse lambda``: the local Lambda service (serve, status, stop)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from wisefuse_plugins.cli.app import console

lambda_app = typer.Typer(
    help="The local Lambda service: the Lambda API on 127.0.0.1 that backend 'local' uses.",
    no_args_is_help=True,
)


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
