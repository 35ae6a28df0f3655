"""Benchmark: each example Prefect flow run planned by ``@wisefuse`` (local backend) against
its plain run, in the same benchmark run: wall time, and measured cost against predicted.

For each flow of ``prefect/`` (approx_svd, video_analytics, ml_pipeline) at ``--size``:

1. run the plain flow (the ``@flow`` object, undecorated) once to warm up and ``--ref-runs``
   times more: their median wall time is the SLO the plan is made for ("no slower than
   now"), in seconds;
2. call it decorated (``@wisefuse(block=...)``, no plan yet): it runs plain, traced, and
   records its trace in this benchmark's own ``WISEFUSE_HOME``, as a user's first call does;
3. profile the trace's stages on an in-process local Lambda (``--memories``, bundles 1
   and 2, ``--profile-runs`` samples), calibrate it, and plan with
   :func:`~wisefuse_plugins.optimizer.search.optimize` for that SLO (15% headroom, as
   ``wisefuse optimize`` by default), written to ``$WISEFUSE_HOME/plans/<flow>.plan.json``:
   what ``wisefuse profile`` then ``wisefuse optimize`` do;
4. call the decorated flow once more (the first planned run: cold starts, kept apart),
   then ``--repeats`` rounds of one plain and one planned run, taking turns (who goes
   first alternates), so both see the same host. A planned run's measured cost is what
   its unit invocations billed (Lambda duration and requests, and the S3-equivalent
   requests they made: what the model predicts); wall time is the flow call's, as a user
   sees it. Every planned run must return the plain run's value.

Goals (issue 22): the planned run's median wall time at most the plain run's, and the
planned runs' mean measured cost within 10% of the plan's predicted cost (warm runs: the
prediction is per warm run). A missed goal prints what the figures say about why.

The planned runs' units run on the local Lambda *service* the ``WiseFuseLambda`` block
starts on demand (as for a user; one per engine options, stopped at the end), with at
most ``--concurrency`` invocations at once: by default as many as the host's cores hold at
the plan's CPU shares (:func:`~wisefuse_plugins.runtime.measure.concurrency_for`), since
invocations whose shares add up to more than the cores slow each other down here, where
Lambda gives each its own machine. Prefect runs against a temporary server (its own
``PREFECT_HOME``), or the API of the process when one is already set up (the smoke test).

    .venv/bin/python benchmarks/prefect_runs.py [--flows approx_svd,video_analytics,ml_pipeline]
        [--size default] [--repeats 3] [--json PATH] [--plot PATH]
    .venv/bin/python benchmarks/prefect_runs.py --quick   # approx_svd at its small size, 1 round
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._common import (  # noqa: E402
    BLAS_ENV,
    OUT,
    fmt_table,
    host_line,
    same_result,
    write_json,
)
from wisefuse_plugins.demo import environment  # noqa: E402

#: flow key: (file under prefect/, flow object's name, the plain-Python app with its SIZES)
FLOWS: dict[str, tuple[str, str, str]] = {
    "approx_svd": ("approx_svd.py", "approx_svd", "examples.apps.svd"),
    "video_analytics": ("video_analytics.py", "video_analytics", "examples.apps.video"),
    "ml_pipeline": ("ml_pipeline.py", "ml_pipeline_flow", "examples.apps.ml_pipeline"),
}
MEMORIES = (512, 1769, 3538)  # `wisefuse profile`'s default sizes
BUNDLES = (1, 2)  # `wisefuse profile`'s default bundle sizes
COST_TOLERANCE = 0.10  # the goal: measured cost within 10% of predicted


@dataclass
class FlowFigures:
    """One flow's figures (seconds, USD per run)."""

    flow: str
    size: str
    parameters: dict[str, Any]
    slo_s: float  # the plain runs' median wall time before planning
    plan: str
    predicted_p95_s: float
    predicted_cost_usd: float
    concurrency: int
    plain_wall_s: list[float] = field(default_factory=list)
    planned_wall_s: list[float] = field(default_factory=list)
    planned_cost_usd: list[float] = field(default_factory=list)  # Lambda + S3 requests
    planned_lambda_usd: list[float] = field(default_factory=list)  # Lambda only
    planned_billed_ms: list[float] = field(default_factory=list)
    planned_invocations: int = 0
    plain_task_runs: int = 0
    first_wall_s: float = 0.0  # the first planned run (cold starts)
    first_cost_usd: float = 0.0
    first_cold_starts: int = 0
    first_init_ms: list[float] = field(default_factory=list)
    warm_cold_starts: int = 0  # cold starts in the measured (warm) rounds
    traced_wall_s: float = 0.0
    profile_s: float = 0.0
    same_result: bool = True
    planned_by_check: bool = True
    check_reason: str | None = None
    unit_billed_ms: dict[str, list[float]] = field(default_factory=dict)
    unit_predicted_ms: dict[str, float] = field(default_factory=dict)

    @property
    def plain_median_s(self) -> float:
        return statistics.median(self.plain_wall_s)

    @property
    def planned_median_s(self) -> float:
        return statistics.median(self.planned_wall_s)

    @property
    def cost_error(self) -> float:
        return statistics.fmean(self.planned_cost_usd) / self.predicted_cost_usd - 1

    @property
    def wall_met(self) -> bool:
        return self.planned_median_s <= self.plain_median_s

    @property
    def cost_met(self) -> bool:
        return abs(self.cost_error) <= COST_TOLERANCE


# --------------------------------------------------------------------------- set-up


@contextlib.contextmanager
def prefect_api(root: Path) -> Iterator[str]:
    """A Prefect API for the flow runs: the one this process already has (a test session's
    temporary server), else a temporary server in a ``PREFECT_HOME`` under ``root``
    (Prefect's test harness: started here, its log workers drained before it stops)."""
    if "prefect" in sys.modules:
        from prefect.settings import get_current_settings

        url = get_current_settings().api.url
        if url:
            yield f"this process's Prefect API {url}"
            return
    home = root / "prefect-home"
    for name in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE"):
        os.environ.pop(name, None)
    with environment(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_MEMO_STORE_PATH=str(home / "memo_store.toml"),
        PREFECT_RESULTS_LOCAL_STORAGE_PATH=str(home / "storage"),
    ):
        from prefect.testing.utilities import prefect_test_harness

        t0 = time.perf_counter()
        with prefect_test_harness(server_startup_timeout=180):
            yield f"a temporary Prefect server (started in {time.perf_counter() - t0:.1f} s)"


def load_flow(key: str) -> tuple[Any, Any]:
    """The example's ``@flow`` object (its file imported under a name of its own) and app."""
    file_name, flow_name, app_module = FLOWS[key]
    path = REPO / "prefect" / file_name
    spec = importlib.util.spec_from_file_location(f"wisefuse_bench_{key}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return getattr(module, flow_name), importlib.import_module(app_module)


@contextlib.contextmanager
def recorded_runs() -> Iterator[list[Any]]:
    """Every :class:`~wisefuse_plugins.providers.prefect.planned.PlannedRun` that closes
    meanwhile (their invocation records: ``calls``), in order."""
    from wisefuse_plugins.providers.prefect.planned import PlannedRun

    runs: list[Any] = []
    original = PlannedRun.close

    def close(self: Any) -> None:
        runs.append(self)
        original(self)

    PlannedRun.close = close  # type: ignore[method-assign]
    try:
        yield runs
    finally:
        PlannedRun.close = original  # type: ignore[method-assign]


def run_cost(calls: list[dict[str, Any]]) -> tuple[float, float]:
    """(Lambda + S3-equivalent requests, Lambda only) of one planned run's invocations:
    what the model's cost counts (``model/cost.py``)."""
    from wisefuse_plugins.plan.pricing import s3_cost

    lam = sum(c["cost_usd"] for c in calls)
    s3 = sum(
        s3_cost(
            int(c["store"].get("puts", 0)) + int(c.get("values_stored", 0)),
            int(c["store"].get("gets", 0)),
        )
        for c in calls
    )
    return lam + s3, lam


def timed(call: Any, **params: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    value = call(**params)
    return time.perf_counter() - t0, value


# --------------------------------------------------------------------------- one flow


def bench_flow(
    key: str,
    *,
    size: str,
    repeats: int,
    ref_runs: int,
    memories: tuple[int, ...],
    profile_runs: int,
    concurrency: int | None,
    headroom: float,
    lam: Any,
    tmp: Path,
) -> FlowFigures:
    from wisefuse_plugins.model.predict import Model
    from wisefuse_plugins.optimizer.search import optimize
    from wisefuse_plugins.plan.limits import vcpus
    from wisefuse_plugins.plan.schema import dump_plan
    from wisefuse_plugins.prefect import WiseFuseLambda, wisefuse
    from wisefuse_plugins.profiles import ProfileBench, ProfileGrid, open_archive, profile_workflow
    from wisefuse_plugins.profiles.calibrate import calibrate_local
    from wisefuse_plugins.render import plan_line
    from wisefuse_plugins.runtime.backends.units import LocalUnits
    from wisefuse_plugins.runtime.measure import concurrency_for
    from wisefuse_plugins.runtime.store import LocalStore
    from wisefuse_plugins.targets import load_workflow

    flow, app = load_flow(key)
    params = dict(app.SIZES[size])
    print(f"\n{key} ({flow.name}) at size {size!r}: {params}", flush=True)

    # 1. the plain flow: the reference, and the SLO
    _, expected = timed(flow, **params)  # warm-up: the first run of a flow in a process
    before = [timed(flow, **params)[0] for _ in range(ref_runs)]
    slo_s = statistics.median(before)
    print(f"  plain: {', '.join(f'{w:.2f}' for w in before)} s (after a warm-up run)", flush=True)

    # 2. the decorated flow's first call: plain, traced, recorded
    probe_block = WiseFuseLambda()
    decorated = wisefuse(block=probe_block)(flow)
    traced_s, value = timed(decorated, **params)
    if not same_result(value, expected):
        raise SystemExit(f"{key}: the traced run returned another value than the plain run")
    _, exact = decorated.trace_paths(decorated.call_parameters(**params))
    assert exact is not None
    workflow = load_workflow(exact)
    widths = {s.id: s.parallelism for s in workflow.stages if s.mapped}
    print(
        f"  traced run {traced_s:.2f} s: {len(workflow.stages)} stages, mapped widths {widths}",
        flush=True,
    )

    # 3. profile, calibrate, plan for the plain run's wall time
    store = LocalStore(tmp / "profile-store" / key)
    t0 = time.perf_counter()
    with open_archive() as archive:
        summary = profile_workflow(
            workflow,
            ProfileGrid(memories=memories, bundles=BUNDLES, runs=profile_runs),
            ProfileBench(
                backend=LocalUnits(lam, store.url, Path(workflow.source.root), timeout_s=600),
                store=store,
                code_root=workflow.source.root,
                workdir=tmp / "profile-units" / key,
            ),
            archive=archive,
            progress=False,
        )
        for failure in summary.failures:
            print(f"  could not profile {failure}", flush=True)
        platform = calibrate_local(store, lam, archive=archive)
        model = Model(archive.profiles_for(workflow, backend="local"), platform)
    profile_s = time.perf_counter() - t0
    planned = optimize(workflow, model, slo_s, headroom=headroom)
    plan = planned.plan
    dump_plan(plan, decorated.plan_path)
    cores = float(lam.host.cores)
    limit = concurrency or concurrency_for(plan, cores)
    widest = max(min(vcpus(u.memory_mb), cores) for u in plan.units)
    print(
        f"  profiled at {'/'.join(map(str, memories))} MB, bundles {'/'.join(map(str, BUNDLES))},"
        f" {profile_runs} samples, and calibrated in {profile_s:.0f} s; plan for the SLO"
        f" {slo_s:.2f} s ({headroom:.0%} headroom): {plan_line(plan)}, predicted P95"
        f" {planned.prediction.p95_s:.2f} s, ${planned.prediction.cost_usd:.8f} per run;"
        f" {limit} invocations at once (its widest unit: {widest:g} vCPU of {cores:g} cores)",
        flush=True,
    )

    # 4. planned runs against plain runs, taking turns
    block = WiseFuseLambda(concurrency_limit=limit)
    decorated = wisefuse(block=block)(flow)
    check = decorated.check(**params)
    figures = FlowFigures(
        flow=key,
        size=size,
        parameters=params,
        slo_s=slo_s,
        plan=plan_line(plan),
        predicted_p95_s=planned.prediction.p95_s,
        predicted_cost_usd=planned.prediction.cost_usd,
        concurrency=limit,
        traced_wall_s=traced_s,
        profile_s=profile_s,
        planned_by_check=check.planned,
        check_reason=check.reason,
        plain_task_runs=sum(max(1, s.parallelism) for s in workflow.stages),
        unit_predicted_ms={u.unit: u.mean_invocation_ms for u in planned.prediction.units},
    )
    if not check.planned:
        print(f"  NOT PLANNED: {check.reason}", flush=True)
        return figures
    with recorded_runs() as runs:
        first_s, value = timed(decorated, **params)
        calls = runs[-1].calls
        figures.first_wall_s = first_s
        figures.first_cost_usd = run_cost(calls)[0]
        figures.first_cold_starts = sum(1 for c in calls if c["cold"])
        figures.first_init_ms = [float(c["init_ms"]) for c in calls if c["init_ms"]]
        figures.same_result = same_result(value, expected)
        print(
            f"  first planned run {first_s:.2f} s: {len(calls)} invocations,"
            f" {figures.first_cold_starts} cold starts (INIT"
            f" {_spread(figures.first_init_ms)} ms)",
            flush=True,
        )
        for r in range(repeats):
            order = ("plain", "planned") if r % 2 == 0 else ("planned", "plain")
            for form in order:
                if form == "plain":
                    wall, value = timed(flow, **params)
                    figures.plain_wall_s.append(wall)
                    figures.same_result &= same_result(value, expected)
                    continue
                seen = len(runs)
                wall, value = timed(decorated, **params)
                assert len(runs) == seen + 1, "the decorated flow did not run its plan"
                calls = runs[-1].calls
                total, lam_only = run_cost(calls)
                figures.planned_wall_s.append(wall)
                figures.planned_cost_usd.append(total)
                figures.planned_lambda_usd.append(lam_only)
                figures.planned_billed_ms.append(sum(float(c["billed_ms"]) for c in calls))
                figures.planned_invocations = len(calls)
                figures.warm_cold_starts += sum(1 for c in calls if c["cold"])
                for c in calls:
                    figures.unit_billed_ms.setdefault(c["unit"], []).append(float(c["billed_ms"]))
                figures.same_result &= same_result(value, expected)
            print(
                f"  round {r + 1}: plain {figures.plain_wall_s[-1]:.2f} s, planned"
                f" {figures.planned_wall_s[-1]:.2f} s (${figures.planned_cost_usd[-1]:.8f})",
                flush=True,
            )
    return figures


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{min(values):.0f}" if len(values) == 1 else f"{min(values):.0f}-{max(values):.0f}"


# --------------------------------------------------------------------------- output


def report(rows: list[FlowFigures]) -> list[str]:
    """The table, the goals' verdicts; returns the lines explaining missed goals."""
    print(
        "\nmedian wall time of the flow call (s), plain and planned, rounds taking turns; cost"
        " per warm planned run (Lambda + S3-equivalent requests, mean) against the plan's"
        " prediction"
    )
    print(
        fmt_table(
            ["flow", "plain s", "planned s", "vs plain", "1st planned s", "cold", "predicted $",
             "measured $", "error", "P95 pred s", "same", "plan"],
            [
                [
                    f.flow, f"{f.plain_median_s:.2f}", f"{f.planned_median_s:.2f}",
                    f"{f.planned_median_s / f.plain_median_s:.2f}x", f"{f.first_wall_s:.2f}",
                    f.first_cold_starts, f"{f.predicted_cost_usd:.8f}",
                    f"{statistics.fmean(f.planned_cost_usd):.8f}", f"{f.cost_error:+.1%}",
                    f"{f.predicted_p95_s:.2f}", "yes" if f.same_result else "NO", f.plan,
                ]
                for f in rows
                if f.planned_wall_s
            ],
            align="lrrrrrrrrrll",
        )
    )  # fmt: skip
    why: list[str] = []
    print()
    for f in rows:
        if not f.planned_wall_s:
            print(f"{f.flow}: not planned ({f.check_reason}): no figures")
            why.append(f"{f.flow}: not planned")
            continue
        print(
            f"{f.flow}: wall time goal {'met' if f.wall_met else 'MISSED'}"
            f" (planned {f.planned_median_s:.2f} s vs plain {f.plain_median_s:.2f} s);"
            f" cost goal {'met' if f.cost_met else 'MISSED'} ({f.cost_error:+.1%} on the"
            f" prediction, goal within {COST_TOLERANCE:.0%})"
        )
        if not f.wall_met:
            why.append(
                f"{f.flow} wall time: the plan was predicted to take P95 {f.predicted_p95_s:.2f} s"
                f" of unit time (Lambda-equivalent) for an SLO of {f.slo_s:.2f} s; measured"
                f" {f.planned_median_s:.2f} s of flow call, {f.planned_invocations} invocations"
                f" as task runs, against {f.plain_median_s:.2f} s plain ({f.plain_task_runs}"
                " task runs); the plain rounds were"
                f" {', '.join(f'{w:.2f}' for w in f.plain_wall_s)} s, the planned"
                f" {', '.join(f'{w:.2f}' for w in f.planned_wall_s)} s"
            )
        if not f.cost_met:
            units = "; ".join(
                f"{u} billed {statistics.fmean(ms):.0f} ms per invocation (predicted"
                f" {f.unit_predicted_ms.get(u, float('nan')):.0f})"
                for u, ms in f.unit_billed_ms.items()
            )
            why.append(
                f"{f.flow} cost: measured ${statistics.fmean(f.planned_cost_usd):.8f} per run"
                f" (Lambda ${statistics.fmean(f.planned_lambda_usd):.8f}) against"
                f" ${f.predicted_cost_usd:.8f} predicted; {units}; cold starts in the measured"
                f" rounds: {f.warm_cold_starts}"
            )
    for line in why:
        print(f"  why: {line}")
    return why


def plot(rows: list[FlowFigures], path: Path) -> Path:
    """Two panels: wall time plain vs planned (median, range), cost measured vs predicted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [f for f in rows if f.planned_wall_s]
    fig, (wall, cost) = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    xs = range(len(rows))
    for offset, label, data in (
        (-0.2, "plain", [f.plain_wall_s for f in rows]),
        (0.2, "planned (@wisefuse, local)", [f.planned_wall_s for f in rows]),
    ):
        med = [statistics.median(d) for d in data]
        lo = [m - min(d) for m, d in zip(med, data, strict=True)]
        hi = [max(d) - m for m, d in zip(med, data, strict=True)]
        wall.bar([x + offset for x in xs], med, 0.4, yerr=[lo, hi], capsize=3, label=label)
    wall.set_xticks(list(xs), [f.flow for f in rows])
    wall.set_ylabel("flow call wall time (s): median, min-max")
    wall.set_title("wall time")
    wall.legend(fontsize=8)
    for offset, label, values in (
        (-0.2, "predicted", [f.predicted_cost_usd * 1000 for f in rows]),
        (0.2, "measured (warm runs, mean)", [statistics.fmean(f.planned_cost_usd) * 1000 for f in rows]),
    ):  # fmt: skip
        cost.bar([x + offset for x in xs], values, 0.4, label=label)
    cost.set_xticks(list(xs), [f.flow for f in rows])
    cost.set_ylabel("cost per 1,000 runs (USD)")
    cost.set_title(f"cost of the planned run (goal: within {COST_TOLERANCE:.0%})")
    cost.legend(fontsize=8)
    for ax in (wall, cost):
        ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- main


def arguments() -> argparse.ArgumentParser:
    from wisefuse_plugins.optimizer.search import SLO_HEADROOM

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--flows", default=",".join(FLOWS), help="comma-separated, of " + ", ".join(FLOWS)
    )
    ap.add_argument("--size", default="default", choices=("small", "default"))
    ap.add_argument("--repeats", type=int, default=3, help="rounds of one plain + one planned run")
    ap.add_argument("--ref-runs", type=int, default=2, help="plain runs before planning (the SLO)")
    ap.add_argument("--profile-runs", type=int, default=3, help="samples per stage and setting")
    ap.add_argument("--memories", default=",".join(map(str, MEMORIES)), help="profiled MB")
    ap.add_argument(
        "--concurrency", type=int, default=0,
        help="the block's concurrency_limit (0: what the host's cores hold at the plan's shares)",
    )  # fmt: skip
    ap.add_argument("--headroom", type=float, default=SLO_HEADROOM)
    ap.add_argument("--json", default=None, help="write the figures there")
    ap.add_argument("--plot", default=str(OUT / "prefect_runs.png"))
    ap.add_argument("--quick", action="store_true", help="approx_svd, small, 1 round (smoke test)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = arguments().parse_args(argv)
    if args.quick:
        args.flows, args.size, args.repeats, args.ref_runs = "approx_svd", "small", 1, 1
        args.profile_runs, args.memories = 2, "512,1769"
    keys = [k.strip() for k in args.flows.split(",") if k.strip()]
    unknown = [k for k in keys if k not in FLOWS]
    if unknown:
        raise SystemExit(f"unknown flow(s) {unknown}; choose from {', '.join(FLOWS)}")
    memories = tuple(int(m) for m in args.memories.split(","))
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="wisefuse-bench-prefect-"))
    home = tmp / "home"
    home.mkdir()
    rows: list[FlowFigures] = []
    print(host_line())
    print(
        f"flows {', '.join(keys)} at size {args.size!r}; per flow: 1 + {args.ref_runs} plain runs"
        f" (their median: the SLO), 1 traced call, profile at {args.memories} MB, plan, 1 first"
        f" planned run, then {args.repeats} rounds of 1 plain + 1 planned run taking turns;"
        " local backend",
        flush=True,
    )
    env = {
        **{k: os.environ.get(k, v) for k, v in BLAS_ENV.items()},
        "WISEFUSE_HOME": str(home),
        "WISEFUSE_DB_URL": f"sqlite:///{home / 'profiles.sqlite'}",
        "WISEFUSE_LAMBDA_IDLE_S": "300",
    }
    os.environ.pop("WISEFUSE_LAMBDA_ENDPOINT", None)
    os.environ.pop("WISEFUSE_STORE", None)
    try:
        with environment(**env), prefect_api(tmp) as api:
            print(f"Prefect: {api}", flush=True)
            from wisefuse_plugins.runtime.backends.local import LocalLambda
            from wisefuse_plugins.runtime.backends.units import preload_for

            modules = preload_for(None)  # type: ignore[arg-type]
            with LocalLambda(keep_alive_s=900, preload=modules) as lam, _local_services():
                for key in keys:
                    rows.append(
                        bench_flow(
                            key,
                            size=args.size,
                            repeats=args.repeats,
                            ref_runs=args.ref_runs,
                            memories=memories,
                            profile_runs=args.profile_runs,
                            concurrency=args.concurrency or None,
                            headroom=args.headroom,
                            lam=lam,
                            tmp=tmp,
                        )
                    )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    why = report(rows)
    measured = [f for f in rows if f.planned_wall_s]
    if measured:
        print(f"plot: {plot(measured, Path(args.plot))}")
    print(host_line())
    total = time.perf_counter() - started
    print(f"total {total:.0f} s")
    write_json(
        args.json,
        {
            "benchmark": "prefect_runs",
            "host": host_line(),
            "size": args.size,
            "repeats": args.repeats,
            "flows": [
                {
                    **asdict(f),
                    "plain_median_s": f.plain_median_s if f.plain_wall_s else None,
                    "planned_median_s": f.planned_median_s if f.planned_wall_s else None,
                    "cost_error": f.cost_error if f.planned_cost_usd else None,
                    "wall_met": f.wall_met if f.planned_wall_s else False,
                    "cost_met": f.cost_met if f.planned_cost_usd else False,
                }
                for f in rows
            ],
            "why": why,
            "seconds": total,
        },
    )
    return 0 if all(f.same_result and f.planned_wall_s for f in rows) else 1


@contextlib.contextmanager
def _local_services() -> Iterator[None]:
    """Stop, at the end, the local Lambda services the blocks started for this benchmark
    (by their folders under this run's ``WISEFUSE_HOME``; others are left alone)."""
    from wisefuse_plugins.runtime.backends.service import ondemand
    from wisefuse_plugins.runtime.store import wisefuse_home

    try:
        yield
    finally:
        home = wisefuse_home().resolve()
        for root in ondemand.running_roots():
            if root.resolve().is_relative_to(home):
                ondemand.stop(root)


if __name__ == "__main__":
    raise SystemExit(main())
