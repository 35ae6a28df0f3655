"""``wisefuse profile``: measure each Python stage on the local Lambda into the archive."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from wisefuse_plugins.cli.app import DB_HELP, TARGET_HELP, CodeRoot, console
from wisefuse_plugins.errors import WiseFuseError


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
