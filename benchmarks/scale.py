"""How long planning takes on large workflows, and how it grows with their size.

Three measurements, each on synthetic profiles (see ``tests/optimizer/randomdags.py``)
with an SLO of 2x the workflow's User-Max P95, and the model's default 1,000 draws:

- ``azure-max``: Azure's extremes in one DAG (WiseFuse, Sec. 3): depth 47 and a
  10,900-wide mapped stage (57 stages);
- ``large``: 2,000-stage layered DAGs (44 layers; ~25% of the stages mapped, widths
  lognormal up to 35,000 instances), the slowest of ``--seeds`` of them;
- ``curve``: layered DAGs of 5 to 2,000 stages. Up to 16 Python stages the optimizer
  runs its small-plan search, which right-sizes the whole plan for every fusion it tries
  (slower per stage, closer to optimal); beyond, the large-plan search.

Time is the CPU time of ``optimize`` (single-threaded, so the wall time of an idle
machine; wall time is printed too). Fitting the profiles' scaling laws is not included:
it is done once per profile set when the model is built (its time is printed apart).
Writes a plot of time against stages under ``benchmarks/out/``.

    .venv/bin/python benchmarks/scale.py [--json out.json] [--seeds 3] [--draws 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the generators live with the tests

from tests.optimizer.randomdags import (  # noqa: E402
    azure_max_workflow,
    layered_workflow,
    realistic_profiles,
)
from wisefuse_plugins.ir import Workflow  # noqa: E402
from wisefuse_plugins.model.predict import Model  # noqa: E402
from wisefuse_plugins.optimizer.search import baseline, optimize  # noqa: E402

CURVE = (5, 10, 16, 20, 50, 100, 200, 500, 1000, 1500, 2000)
GOAL = {"azure_max_s": 1.0, "large_s": 10.0}


def layered(n: int, seed: int) -> Workflow:
    """A layered DAG of ``n`` stages: depth grows with n up to Azure's (~44 layers)."""
    depth = int(min(44, max(3, n // 10)))
    width = int(min(35_000, 20 * n))
    return layered_workflow(np.random.default_rng(seed), n, depth, width, name=f"layered-{n}")


def plan_time(wf: Workflow, draws: int, seed: int) -> dict:
    """Fit the model (timed apart), then time ``optimize`` at 2x User-Max P95."""
    model = Model(realistic_profiles(np.random.default_rng(seed + 1), wf), draws=draws)
    t = time.process_time()
    for s in wf.python_stages:
        model.stage_fit(s.id, "x86_64")
    fit_s = time.process_time() - t
    user_max = baseline(wf, model, "user-max")
    slo = 2.0 * user_max.prediction.p95_s
    fresh = model.with_draws(draws)  # the fitted laws, none of user-max's cached scores
    cpu, wall = time.process_time(), time.perf_counter()
    result = optimize(wf, fresh, slo, arches=("x86_64",))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "stages": len(wf.stages),
        "mapped": sum(s.mapped for s in wf.stages),
        "widest": max(s.parallelism for s in wf.stages),
        "units": len(result.plan.units),
        "meets_slo": result.meets_slo,
        "cost_vs_user_max": result.prediction.cost_usd / user_max.prediction.cost_usd,
        "cpu_s": cpu,
        "wall_s": wall,
        "fit_s": fit_s,
    }


def show(name: str, r: dict) -> None:
    print(
        f"  {name:>10}: {r['stages']:5d} stages ({r['mapped']} mapped, widest {r['widest']:,}) "
        f"-> {r['units']} units, SLO {'met' if r['meets_slo'] else 'MISSED'}, "
        f"cost {r['cost_vs_user_max']:.0%} of User-Max; "
        f"planning {r['cpu_s']:.2f} s CPU ({r['wall_s']:.2f} s wall); model fit {r['fit_s']:.1f} s"
    )


def plot(curve: list[tuple[int, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = np.array([c[0] for c in curve], dtype=float)
    ys = np.array([c[1] for c in curve])
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.loglog(xs, ys, "o-", label="optimize (CPU s)")
    k = ys[-1] / xs[-1]
    ax.loglog(xs, k * xs, "--", color="grey", label="linear (through the last point)")
    ax.axvline(16.5, color="lightgrey", lw=1)
    ax.text(17, ys.max(), " large-plan search ->", fontsize=8, va="top", color="grey")
    ax.set_xlabel("stages")
    ax.set_ylabel("planning time (s)")
    ax.set_title("WiseFuse planning time against workflow size")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--seeds", type=int, default=3, help="2,000-stage DAGs to time (the max)")
    ap.add_argument("--draws", type=int, default=1000, help="Monte Carlo draws of the model")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    args = ap.parse_args(argv)
    print(f"scale: SLO 2x User-Max P95, {args.draws} draws; times exclude fitting the model")

    azure = plan_time(azure_max_workflow(), args.draws, seed=0)
    show("azure-max", azure)
    large = [plan_time(layered(2000, seed), args.draws, seed) for seed in range(args.seeds)]
    for r in large:
        show("large", r)
    curve = []
    for n in CURVE:
        r = plan_time(layered(n, 100 + n), args.draws, seed=100 + n)
        show("curve", r)
        curve.append((r["stages"], r["cpu_s"]))
    azure_s = azure["cpu_s"]
    large_s = max(r["cpu_s"] for r in large)
    (n0, t0), (n1, t1) = curve[len(curve) // 2], curve[-1]
    slope = float(np.log(t1 / t0) / np.log(n1 / n0))
    print(f"azure-max: {azure_s:.2f} s  [goal < {GOAL['azure_max_s']:g} s]")
    print(f"2,000 stages: {large_s:.2f} s (worst of {len(large)})  [goal < {GOAL['large_s']:g} s]")
    print(f"growth from {n0} to {n1} stages: time ~ stages^{slope:.2f}  [goal: close to linear]")
    png = args.out / "scale.png"
    plot(curve, png)
    print(f"plot: {png}")
    if args.json:
        figures = {"azure_max_s": azure_s, "large_s": large_s, "curve": [list(c) for c in curve]}
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
