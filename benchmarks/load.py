"""Load on the local backend: many workflow runs at once, many profile-archive writers at once.

Runs: ``--runs`` runs, ``--concurrency`` at a time, on one local Lambda (at most
``--backend-limit`` workers alive, twice the concurrency by default), over two deployed variants of ``seeded -> crunch (mapped over 8
values, four per invocation) -> checksum`` with different seeds; each run deploys its plan
as the executor does, so the runs also race on deploying. A run is *wrong* when its result
differs from the plain Python result; *lost outputs* are keys a completed run must have
left in the store. Throughput is completed runs per second of wall time on this host.

Archive: ``--writers`` processes and two threads each record ``--samples`` samples (a
unique ref each, in batches of 25) into one SQLite archive at once; *lost samples* are
those not found afterwards (duplicates would count as found twice, and are reported too).

    .venv/bin/python benchmarks/load.py [--runs 50] [--concurrency 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.reliability.loadgen import archive_load, run_load  # noqa: E402
from wisefuse_plugins.runtime import store as st  # noqa: E402
from wisefuse_plugins.runtime.backends.local import LocalLambda  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=8, help="runs in flight at once")
    parser.add_argument(
        "--backend-limit",
        type=int,
        help="invocations (and workers alive) at once on the local Lambda "
        "(default: twice --concurrency: a run has up to two invocations in flight)",
    )
    parser.add_argument("--writers", type=int, default=4, help="archive writer processes")
    parser.add_argument("--samples", type=int, default=500, help="samples per archive writer")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wisefuse-load-") as tmp:
        root = Path(tmp)
        store = st.LocalStore(root / "store")
        limit = args.backend_limit or 2 * args.concurrency
        with LocalLambda(keep_alive_s=120, concurrency_limit=limit) as lam:
            runs = run_load(lam, store, root / "work", runs=args.runs, concurrency=args.concurrency)
        archive = archive_load(
            f"sqlite:///{root / 'profiles.sqlite'}",
            processes=args.writers,
            threads=2,
            per_writer=args.samples,
        )
    print(
        f"workflow runs     {runs.runs} started, {args.concurrency} at a time "
        f"(local Lambda: {limit} workers at most)"
    )
    print(f"  completed       {runs.completed}")
    print(f"  failed          {len(runs.failed)}")
    print(f"  wrong results   {runs.wrong}")
    print(f"  lost outputs    {runs.lost_outputs}")
    print(
        f"  throughput      {runs.runs_per_s:.2f} runs/s ({runs.wall_s:.1f} s wall, "
        f"{runs.invocations} invocations, {runs.cold_starts} cold)"
    )
    for message in runs.failed[:3]:
        print(f"    failed: {message}")
    print(f"archive writers   {args.writers} processes + 2 threads, {archive.expected} samples")
    print(f"  lost samples    {archive.lost}")
    print(f"  duplicates      {archive.found - archive.distinct}")
    print(f"  re-imported     {archive.re_added} (a second import of the same refs adds none)")
    print(f"  write rate      {archive.expected / archive.wall_s:.0f} samples/s")
    if args.json:
        figures = {
            "runs": runs.completed,
            "wrong": runs.wrong,
            "lost_samples": archive.lost,
            "runs_per_s": round(runs.runs_per_s, 3),
            "failed": len(runs.failed),
            "lost_outputs": runs.lost_outputs,
            "duplicate_samples": archive.found - archive.distinct,
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    ok = (
        runs.completed == runs.runs
        and runs.wrong == 0
        and runs.lost_outputs == 0
        and archive.lost == 0
        and archive.found == archive.distinct
        and archive.re_added == 0
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
