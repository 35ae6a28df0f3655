"""How well the model predicts real runs of plans and memory sizes it never saw.

For each example app (video analytics, ML pipeline, approximate SVD; their Airflow DAGs):

1. profile every stage on the local Lambda at a small memory grid (512, 1769 and 3538 MB
   at bundle size 1, and the mapped stages in bundles of 2 at 3538 MB, where the two
   share two vCPUs) into a temporary archive, calibrate the backend, fit the model;
2. for *held-out* plans -- memory sizes that were not profiled (1024, 3008 MB), fused
   units, bundles of 2 and 4 instances, the whole DAG fused into one unit -- predict the
   P95 end-to-end latency and the expected cost per run;
3. run each plan for real (1 warm-up + ``--runs`` runs) and compare with the measured P95
   of the Lambda-equivalent E2E latency and the mean cost per run (Lambda GB-s and
   requests + S3-equivalent store requests), as ``runtime.measure`` rebuilds them.

Prints per case the prediction, the measurement and the error, then the median and
worst error of P95 and of cost, and what limits the accuracy when a goal is missed
(median P95 error <= 10%, cost error <= 5%). Saves a predicted-vs-measured scatter plot
under ``benchmarks/out/``. The held-out measurements are never fed back to the model.

    .venv/bin/python benchmarks/model_accuracy.py [--apps video,ml,svd] [--runs 30] [--json PATH]
    .venv/bin/python benchmarks/model_accuracy.py --quick     # a tiny version (smoke test)
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks._common import (
    APPS,
    App,
    LoadedApp,
    Session,
    app_arguments,
    fmt_table,
    host_line,
    load_app,
    parse_apps,
    pct,
    plain_log_axes,
    platform_line,
    same_result,
    write_json,
)
from wisefuse_plugins.plan.limits import vcpus
from wisefuse_plugins.plan.lower import invocation_count

PROFILED_MEMORIES = (512, 1769, 3538)
#: bundle sizes profiled; the profiler runs a bundle > 1 only where it gets two threads
#: or more (3538 MB here), for the mapped stages' parallel fraction
PROFILED_BUNDLES = (1, 2)
GOAL_P95 = 0.10
GOAL_COST = 0.05


@dataclass
class Row:
    app: str
    case: str
    kind: str  # held-out memory | fused | bundled | whole DAG
    memory_mb: int
    units: int
    invocations: int
    predicted_p95_s: float
    measured_p95_s: float
    p95_error: float  # predicted / measured - 1
    predicted_p50_s: float
    measured_p50_s: float
    predicted_cost_usd: float
    measured_cost_usd: float
    cost_error: float
    runs: int
    cold_starts: int
    measured_cv: float  # stdev / mean of the measured E2E: the runs' own noise
    wall_s: float
    same_result: bool  # the plan's outputs are the in-process run's


def _plan(wf: Any, groups: list[tuple[list[str], int]], memory_mb: int, name: str) -> Any:
    from wisefuse_plugins.optimizer.space import unit_id
    from wisefuse_plugins.plan.schema import Plan, Unit, check_plan, hashes_of

    taken: set[str] = set()
    units = []
    for stages, bundle in groups:
        uid = unit_id(stages, taken)
        taken.add(uid)
        units.append(Unit(id=uid, stages=stages, bundle_size=bundle, memory_mb=memory_mb))
    plan = Plan(workflow=wf.name, units=units, code_hashes=hashes_of(wf), meta={"planner": name})
    return check_plan(plan, wf)


def cases(app: App, wf: Any, quick: bool) -> list[tuple[str, str, Any]]:
    """(name, kind, plan): none of them was profiled as such."""
    order = [s.id for s in wf.python_stages]

    def alone(except_: set[str] = frozenset(), bundle: int = 1) -> list[tuple[list[str], int]]:
        return [([s], bundle if s in app.mapped else 1) for s in order if s not in except_]

    def fused(memory: int) -> Any:
        chain = list(app.chain)
        groups = alone(set(chain))
        groups.insert(order.index(chain[0]), (chain, 1))
        return _plan(wf, groups, memory, f"fused-{memory}")

    found = [
        ("alone @1024", "held-out memory", _plan(wf, alone(), 1024, "alone-1024")),
        ("bundle 2 @1024", "bundled", _plan(wf, alone(bundle=2), 1024, "bundle2-1024")),
    ]
    if quick:
        return found
    return [
        found[0],
        ("alone @3008", "held-out memory", _plan(wf, alone(), 3008, "alone-3008")),
        ("fused chain @1024", "fused", fused(1024)),
        found[1],
        ("bundle 4 @3008", "bundled", _plan(wf, alone(bundle=4), 3008, "bundle4-3008")),
        ("whole DAG @3008", "whole DAG", _plan(wf, [(order, 1)], 3008, "whole-3008")),
    ]


def run_app(
    session: Session, loaded: LoadedApp, *, runs: int, profile_runs: int, quick: bool
) -> list[Row]:
    wf = loaded.workflow
    t0 = time.perf_counter()
    model = session.profile(
        loaded, memories=PROFILED_MEMORIES, bundles=PROFILED_BUNDLES, runs=profile_runs
    )
    print(
        f"  profiled at {'/'.join(map(str, PROFILED_MEMORIES))} MB (bundle 1; mapped stages"
        f" also bundle 2 at 3538 MB; {profile_runs} samples per stage and setting) in"
        f" {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    phis = {
        s.id: model.profiles[s.id].parallel_fraction
        for s in wf.python_stages
        if s.mapped and model.profiles[s.id].parallel_fraction is not None
    }
    if phis:
        print(
            "  parallel fraction in a bundle: "
            + ", ".join(f"{k} {v:.2f}" for k, v in phis.items()),
            flush=True,
        )
    print(f"  {platform_line(session.platform)}", flush=True)
    planned = cases(loaded.app, wf, quick)
    speedup = session.probe()
    print(
        f"  probe: an invocation gets {speedup:.2f} of the host's {session.cores} cores now; "
        f"measuring with the shares in flight within {session.usable_cores():.2f} cores",
        flush=True,
    )
    t = time.perf_counter()
    measured = session.measure_many(loaded, [(name, plan) for name, _, plan in planned], runs=runs)
    wall = (time.perf_counter() - t) / len(planned)
    rows = []
    for name, kind, plan in planned:
        pred = model.predict(wf, plan)
        m = measured[name]
        correct = m.outputs is not None and same_result(m.outputs, loaded.expected)
        if not correct:
            print(f"  WARNING: {name} gave another result than the in-process run")
        mean = statistics.fmean(m.e2e_s)
        row = Row(
            app=loaded.app.key,
            case=name,
            kind=kind,
            memory_mb=plan.units[0].memory_mb,
            units=len(plan.units),
            invocations=sum(invocation_count(wf, u) for u in plan.units),
            predicted_p95_s=pred.p95_s,
            measured_p95_s=m.p95_s,
            p95_error=pred.p95_s / m.p95_s - 1,
            predicted_p50_s=pred.p50_s,
            measured_p50_s=m.p50_s,
            predicted_cost_usd=pred.cost_usd,
            measured_cost_usd=m.mean_cost_usd,
            cost_error=pred.cost_usd / m.mean_cost_usd - 1,
            runs=m.runs,
            cold_starts=m.cold_starts,
            measured_cv=statistics.pstdev(m.e2e_s) / mean if mean > 0 else 0.0,
            wall_s=wall,
            same_result=correct,
        )
        rows.append(row)
        print(
            f"  {name:<18} P95 predicted {row.predicted_p95_s:7.3f} s, measured "
            f"{row.measured_p95_s:7.3f} s ({pct(row.p95_error)}); cost/run predicted "
            f"${row.predicted_cost_usd * 1e6:8.2f}e-6, measured ${row.measured_cost_usd * 1e6:8.2f}e-6 "
            f"({pct(row.cost_error)})",
            flush=True,
        )
    print(
        f"  measured {len(planned)} plans x {runs} runs, taking turns, in {wall * len(planned):.0f} s"
    )
    return rows


def limits(
    rows: list[Row], p95_med: float, cost_med: float, probes: list[float], cores: int, clock: str
) -> list[str]:
    """What the data says about where the errors come from (printed when a goal is missed,
    and always listed per kind of case)."""
    notes = []
    by_kind: dict[str, list[Row]] = {}
    for r in rows:
        by_kind.setdefault(r.kind, []).append(r)
    for kind, rs in by_kind.items():
        errs = [r.p95_error for r in rs]
        notes.append(
            f"{kind}: median P95 error {pct(statistics.median(errs))} "
            f"(signed; {len(rs)} cases), cost {pct(statistics.median(r.cost_error for r in rs))}"
        )
    if p95_med <= GOAL_P95 and cost_med <= GOAL_COST:
        return notes
    cold = sum(r.cold_starts for r in rows)
    if cold:
        notes.append(
            f"{cold} cold starts happened in measured runs (the model assumes warm "
            "execution environments on the local backend): their INIT is in the measured E2E"
        )
    noisy = [r for r in rows if r.measured_cv > 0.15]
    if noisy:
        notes.append(
            "runs vary a lot by themselves (E2E stdev/mean > 15%): "
            + ", ".join(f"{r.app} {r.case} {r.measured_cv:.0%}" for r in noisy)
            + " -- host contention (other processes on the same cores) shows here"
        )
    slow = [
        r
        for r in rows
        if r.kind in ("bundled", "whole DAG") and vcpus(r.memory_mb) > 1 and r.p95_error < -GOAL_P95
    ]
    if slow and clock == "cpu-clock":
        notes.append(
            "units running instances as threads on more than one vCPU are slower than"
            " predicted ("
            + ", ".join(f"{r.app} {r.case} {pct(r.p95_error)}" for r in slow)
            + "): the threads of one interpreter contend, for the GIL between numpy calls and"
            " for memory bandwidth and caches, so they get less out of the vCPUs than the"
            " model's processor sharing assumes (the cpu-clock counts a thread waiting for a"
            " host core as running: waiting for the host is not in it); only bundle size 1"
            " was profiled"
        )
    elif slow:
        notes.append(
            f"the host gave one invocation {', '.join(f'{p:.2f}' for p in probes)} cores of its "
            f"{cores} (probe: two GIL-free threads), so units whose share is larger cannot run"
            " their instances in parallel as on Lambda; with the cgroup clock that is in their"
            " time ("
            + ", ".join(f"{r.app} {r.case} {pct(r.p95_error)}" for r in slow)
            + "), and threads contend for the GIL too"
        )
    low = [
        r for r in rows if r.kind != "whole DAG" and r.memory_mb < 1769 and r.p95_error < -GOAL_P95
    ]
    if low and clock == "cpu-clock":
        notes.append(
            "below one vCPU the profiled times may be too short ("
            + ", ".join(f"{r.app} {r.case} {pct(r.p95_error)}" for r in low)
            + "): the profiler scales the function's wall time by the invocation's"
            " converted/wall ratio, which store waits (not scaled) dilute at small shares"
        )
    over = [r for r in rows if r.p95_error > GOAL_P95]
    if over:
        notes.append(
            "over-predicted ("
            + ", ".join(f"{r.app} {r.case} {pct(r.p95_error)}" for r in over)
            + "): the model draws each instance's duration independently from the few"
            " profiled samples per stage and size (host hiccups included), while every"
            " run here processes the same inputs"
        )
    small = [r for r in rows if r.measured_p95_s < 0.1 and abs(r.p95_error) > GOAL_P95]
    if small:
        notes.append(
            "runs under 100 ms are dominated by per-invocation overheads (store requests,"
            " the handler), which calibration sums up as medians: "
            + ", ".join(f"{r.app} {r.case}" for r in small)
        )
    if cost_med > GOAL_COST:
        notes.append(
            "cost follows the mean billed duration of every invocation; its error is the"
            " mean-duration error of the stages, not of the critical path"
        )
    return notes


def plot(rows: list[Row], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), dpi=120)
    markers = {"held-out memory": "o", "fused": "s", "bundled": "^", "whole DAG": "D"}
    colors = {"video": "tab:blue", "ml": "tab:orange", "svd": "tab:green"}
    for ax, (pred, meas, label, scale) in zip(
        axes,
        [
            ("predicted_p95_s", "measured_p95_s", "P95 end-to-end latency (s)", 1.0),
            ("predicted_cost_usd", "measured_cost_usd", "cost per 1,000 runs (USD)", 1000.0),
        ],
        strict=True,
    ):
        xs = [getattr(r, meas) * scale for r in rows]
        ys = [getattr(r, pred) * scale for r in rows]
        for r, x, y in zip(rows, xs, ys, strict=True):
            ax.scatter(
                x, y, marker=markers.get(r.kind, "o"), color=colors.get(r.app, "grey"), s=45,
                zorder=3,
            )  # fmt: skip
        lo, hi = min(xs + ys) * 0.8, max(xs + ys) * 1.25
        ax.plot([lo, hi], [lo, hi], color="black", linewidth=1)
        ax.fill_between(
            [lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="grey", alpha=0.15
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain_log_axes(ax)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel(f"measured {label}")
        ax.set_ylabel(f"predicted {label}")
        ax.grid(True, which="both", alpha=0.25)
    handles = [
        plt.Line2D([], [], color=c, marker="o", linestyle="", label=a) for a, c in colors.items()
        if any(r.app == a for r in rows)
    ] + [
        plt.Line2D([], [], color="grey", marker=m, linestyle="", label=k) for k, m in markers.items()
        if any(r.kind == k for r in rows)
    ]  # fmt: skip
    axes[0].legend(handles=handles, fontsize=8, loc="upper left")
    axes[0].set_title("P95: held-out plans (band: +-10%)")
    axes[1].set_title("cost per run (band: +-10%)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = app_arguments(__doc__.split("\n\n")[0], "model_accuracy.png", "case")
    ap.add_argument(
        "--quick", action="store_true", help="tiny version: svd at its small size, 2 cases, 2 runs"
    )
    args = ap.parse_args(argv)
    apps = parse_apps(args.apps or ("svd" if args.quick else ",".join(APPS)))
    size = "small" if args.quick else "bench"
    runs = 2 if args.quick else args.runs
    profile_runs = 2 if args.quick else args.profile_runs
    started = time.perf_counter()
    print(host_line(args.clock))
    print(
        f"apps {', '.join(a.key for a in apps)} at size {size!r}; profiled at "
        f"{'/'.join(map(str, PROFILED_MEMORIES))} MB, bundle 1 (and 2 at 3538 MB); "
        f"each case: 1 warm-up + {runs} runs",
        flush=True,
    )
    rows: list[Row] = []
    with Session(clock=args.clock) as session:
        for app in apps:
            loaded = load_app(app, size)
            print(
                f"\n{app.key}: {loaded.workflow.name}, mapped widths {loaded.widths} "
                f"(loaded and observed in {loaded.seconds:.0f} s)",
                flush=True,
            )
            rows += run_app(session, loaded, runs=runs, profile_runs=profile_runs, quick=args.quick)
        preload = session.preload
        probes = [*session.probes, session.probe()]
        cores = session.cores
    p95_errs = [abs(r.p95_error) for r in rows]
    cost_errs = [abs(r.cost_error) for r in rows]
    p95_med, p95_max = statistics.median(p95_errs), max(p95_errs)
    cost_med, cost_max = statistics.median(cost_errs), max(cost_errs)
    print()
    print(
        fmt_table(
            [
                "app",
                "plan",
                "P95 pred (s)",
                "P95 meas (s)",
                "error",
                "cost pred ($/1k)",
                "cost meas ($/1k)",
                "error",
            ],
            [
                [
                    r.app,
                    r.case,
                    f"{r.predicted_p95_s:.3f}",
                    f"{r.measured_p95_s:.3f}",
                    pct(r.p95_error),
                    f"{r.predicted_cost_usd * 1000:.5f}",
                    f"{r.measured_cost_usd * 1000:.5f}",
                    pct(r.cost_error),
                ]
                for r in rows
            ],
            left=2,
        )
    )
    print()
    print(
        f"{len(rows)} cases: P95 error median {p95_med:.1%}, worst {p95_max:.1%} "
        f"(goal <= {GOAL_P95:.0%}; the paper reports <= 13%); cost error median "
        f"{cost_med:.1%}, worst {cost_max:.1%} (goal <= {GOAL_COST:.0%})"
    )
    met = p95_med <= GOAL_P95 and cost_med <= GOAL_COST
    print("goals met" if met else "goals NOT met; what limits the accuracy:")
    for note in limits(rows, p95_med, cost_med, probes, cores, args.clock):
        print(f"  - {note}")
    if preload:
        print(f"workers forked from a server preloading {', '.join(preload)}")
    path = plot(rows, Path(args.plot))
    print(f"plot: {path}")
    print(host_line(args.clock))
    print(f"total {time.perf_counter() - started:.0f} s")
    write_json(
        args.json,
        {
            "cases": len(rows),
            "p95_error_median": p95_med,
            "p95_error_max": p95_max,
            "cost_error_median": cost_med,
            "cost_error_max": cost_max,
            "runs": runs,
            "size": size,
            "host": host_line(args.clock),
            "clock": args.clock,
            "seconds": time.perf_counter() - started,
            "rows": [asdict(r) for r in rows],
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
