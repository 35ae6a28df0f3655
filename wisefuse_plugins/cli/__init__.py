"""The ``wisefuse`` command line: one module per family of commands.

``app`` holds the root command, its consoles and the error printing (:func:`main`);
``explore`` (demo, inspect), ``profiling`` (profile), ``planning`` (optimize, report),
``shipping`` (deploy, package) and ``service`` (lambda) the commands, registered here in
the order ``wisefuse --help`` lists them. Heavy imports (Airflow, Prefect, the runtime)
happen inside the commands that need them.
"""

from __future__ import annotations

from wisefuse_plugins.cli import explore, planning, profiling, service, shipping
from wisefuse_plugins.cli.app import app, console, err_console, main

for _command in (
    explore.demo,
    explore.inspect,
    profiling.profile,
    planning.optimize,
    planning.report,
    shipping.deploy,
    shipping.package,
):
    app.command()(_command)
app.add_typer(service.lambda_app, name="lambda")

__all__ = ["app", "console", "err_console", "main"]
