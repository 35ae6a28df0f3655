"""How close the optimizer gets to the exhaustive oracle on small random workflows.

Each case is a random DAG of 3-7 stages (chains, scatters to up to 20 instances,
one-to-one mapped continuations, gathers, broadcasts, joins) with synthetic profiles
(vcpu scaling law, some stages multi-threaded, skewed lognormal durations, heavier skew
for mapped stages, data sizes 1 KB-50 MB log-uniform, peak memory 60 MB-2 GB) and an SLO
drawn uniformly between 1.2x and 5x of its User-Max P95. Our optimizer and the oracle
search the same grid (memory: ``MEMORY_GRID``; bundle sizes: every size giving a
distinct invocation count), with the same model and draws. Prints the median and worst
ratio of our cost to the oracle's (cases where both meet the SLO) and the share of cases
where we meet the SLO whenever the oracle can.

    .venv/bin/python benchmarks/optimality.py [--cases 200] [--seed 0] [--draws 400]
        [--workers 2] [--json out.json] [--verbose]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the generators live with the tests

from tests.optimizer.randomdags import realistic_profiles, realistic_workflow  # noqa: E402
from wisefuse_plugins.model.predict import Model  # noqa: E402
from wisefuse_plugins.optimizer.search import baseline, optimize  # noqa: E402
from wisefuse_plugins.optimizer.space import MEMORY_GRID  # noqa: E402

GOAL = {"median": 1.02, "worst": 1.10, "feasible": 1.0}


def run_case(args: tuple[int, int, int]) -> dict:
    """One random workflow: plan it with ours and the oracle, on the same grid."""
    seed, case, draws = args
    rng = np.random.default_rng([seed, case])
    n = int(rng.integers(3, 8))
    wf = realistic_workflow(rng, n, max_width=20)
    model = Model(realistic_profiles(rng, wf), draws=draws, seed=case)
    user_max = baseline(wf, model, "user-max").prediction.p95_s
    factor = float(rng.uniform(1.2, 5.0))
    slo = factor * user_max
    t0 = time.process_time()
    ours = optimize(wf, model, slo, arches=("x86_64",), memory_grid=MEMORY_GRID)
    t1 = time.process_time()
    best = baseline(wf, model, "oracle", slo, memory_grid=MEMORY_GRID)
    t2 = time.process_time()
    return {
        "case": case,
        "stages": n,
        "mapped": sum(s.mapped for s in wf.stages),
        "slo_x": factor,
        "ours_cost": ours.prediction.cost_usd,
        "ours_p95": ours.prediction.p95_s,
        "ours_ok": ours.meets_slo,
        "oracle_cost": best.prediction.cost_usd,
        "oracle_p95": best.prediction.p95_s,
        "oracle_ok": best.meets_slo,
        "ours_units": len(ours.plan.units),
        "oracle_units": len(best.plan.units),
        "ours_s": t1 - t0,
        "oracle_s": t2 - t1,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--draws", type=int, default=400, help="Monte Carlo draws of the model")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--verbose", action="store_true", help="one line per case")
    args = ap.parse_args(argv)

    print(
        f"optimality: {args.cases} random workflows (3-7 stages, mapped up to 20 instances), "
        f"SLO 1.2x-5x of User-Max P95, seed {args.seed}, {args.draws} draws, "
        f"memory grid {len(MEMORY_GRID)} sizes {MEMORY_GRID[0]}-{MEMORY_GRID[-1]} MB, "
        f"{args.workers} worker(s)"
    )
    start = time.perf_counter()
    jobs = [(args.seed, c, args.draws) for c in range(args.cases)]
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            rows = list(pool.map(run_case, jobs, chunksize=1))
    else:
        rows = [run_case(j) for j in jobs]
    wall = time.perf_counter() - start

    ratios = [
        (r["ours_cost"] / r["oracle_cost"], r["case"])
        for r in rows
        if r["ours_ok"] and r["oracle_ok"]
    ]
    can = [r for r in rows if r["oracle_ok"]]
    met = [r for r in can if r["ours_ok"]]
    if args.verbose:
        for r in rows:
            print(
                f"  case {r['case']:3d}: {r['stages']} stages ({r['mapped']} mapped), SLO {r['slo_x']:.2f}x: "
                f"ours ${r['ours_cost'] * 1000:.4f}/1k in {r['ours_units']} units "
                f"(P95 {r['ours_p95']:.2f} s, {'ok' if r['ours_ok'] else 'MISS'}), "
                f"oracle ${r['oracle_cost'] * 1000:.4f}/1k in {r['oracle_units']} "
                f"(P95 {r['oracle_p95']:.2f} s, {'ok' if r['oracle_ok'] else 'miss'}) "
                f"ratio {r['ours_cost'] / r['oracle_cost']:.4f}; {r['ours_s']:.2f} s vs {r['oracle_s']:.2f} s"
            )
    median = statistics.median(r for r, _ in ratios) if ratios else float("nan")
    worst, worst_case = max(ratios) if ratios else (float("nan"), -1)
    feasible = len(met) / len(can) if can else 1.0
    within = sum(r <= 1.0 + 1e-9 for r, _ in ratios)
    ours_t = [r["ours_s"] for r in rows]
    oracle_t = [r["oracle_s"] for r in rows]
    print(f"cases where the oracle meets the SLO: {len(can)} of {len(rows)}")
    print(
        f"cost ratio ours / oracle: median {median:.4f}, worst {worst:.4f} (case {worst_case}), "
        f"equal in {within} of {len(ratios)}  [goal: median <= {GOAL['median']}, worst <= {GOAL['worst']}]"
    )
    print(f"SLO met when the oracle meets it: {feasible:.1%} ({len(met)}/{len(can)})  [goal: 100%]")
    print(
        f"planning CPU time per case: ours median {statistics.median(ours_t):.2f} s (max {max(ours_t):.2f}), "
        f"oracle median {statistics.median(oracle_t):.2f} s (max {max(oracle_t):.2f}); wall {wall:.0f} s"
    )
    figures = {
        "cases": len(rows),
        "cost_ratio_median": median,
        "cost_ratio_max": worst,
        "feasible_share": feasible,
    }
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
