"""Fault injection on the local backend: does every run recover, with nothing lost or leaked?

For each fault, runs the workflow ``make -> work (mapped over 4 inputs, two per
invocation) -> total`` ``--runs`` times on real worker processes, with the fault armed
for one instance's first attempt (the stage allows one retry). A run *recovers* when it
completes with the plain Python result. *Lost* counts outputs that a successful
invocation reported but the store lacks or holds wrongly, plus outputs written twice.
*Leaked* counts processes left behind (workers, or children the tasks started) after
each run and after the backend is closed, plus partial files left in the store and
cgroup folders left on the host.

Faults: ``raise`` (the task raises), ``kill`` (the worker is SIGKILLed from another
thread while the task runs), ``oom`` (the task allocates 1 GB in a 256 MB unit),
``timeout`` (the task sleeps past the unit's timeout, after starting a child process),
``half-write`` (the store's write gets half the bytes, then ENOSPC), ``half-write-scatter``
(the same on the third of a list's element writes: the retry resumes a partly stored
unit), ``kill-in-write`` (the worker is killed half-way through writing an output),
``exit`` (the task calls ``os._exit``).

    .venv/bin/python benchmarks/faults.py [--runs 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.reliability.faulty import faulty_app  # noqa: E402
from tests.reliability.harness import (  # noqa: E402
    descendants,
    own_cgroups,
    processes_with,
    run_scenario,
    wait_until,
)
from wisefuse_plugins.runtime import store as st  # noqa: E402
from wisefuse_plugins.runtime.backends.local import LocalLambda  # noqa: E402

FAULTS = [
    "raise",
    "kill",
    "oom",
    "timeout",
    "half-write",
    "half-write-scatter",
    "kill-in-write",
    "exit",
]
TIMEOUT_S = 2.5


def run_fault(fault: str, runs: int, workdir: Path) -> dict:
    before_procs = descendants()
    before_groups = set(own_cgroups())
    tried = recovered = lost = leaked = 0
    messages: list[str] = []
    start = time.perf_counter()
    lam = LocalLambda(keep_alive_s=60, concurrency_limit=4)
    try:
        for i in range(runs):
            tmp = workdir / f"{fault}-{i}"
            tmp.mkdir(parents=True)
            store = st.LocalStore(tmp / "store")
            timeout_s = TIMEOUT_S if fault == "timeout" else 60.0  # an OOM must not time out
            out = run_scenario(lam, store, tmp, fault, n=4, timeout_s=timeout_s)
            tried += 1
            recovered += out.ok and out.result == faulty_app.expected_total(4)
            lost += len(out.lost) + len(out.duplicated) + len(out.stray)
            leaked += len(out.leaked) + len(out.temp_files)
            if not out.ok:
                messages.append(out.message)
    finally:
        lam.close()
    wait_until(lambda: not (descendants() - before_procs))
    leaked += len(descendants() - before_procs)
    leaked += len(processes_with(workdir))
    leaked += len(set(own_cgroups()) - before_groups)
    return {
        "fault": fault,
        "tried": tried,
        "recovered": recovered,
        "lost": lost,
        "leaked": leaked,
        "seconds": round(time.perf_counter() - start, 1),
        "failures": messages[:3],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per fault (default 5)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--faults", nargs="*", default=FAULTS, choices=FAULTS)
    args = parser.parse_args(argv)
    rows = []
    print(f"{'fault':<20} {'tried':>6} {'recovered':>10} {'lost':>5} {'leaked':>7} {'time':>7}")
    with tempfile.TemporaryDirectory(prefix="wisefuse-faults-") as tmp:
        for fault in args.faults:
            row = run_fault(fault, args.runs, Path(tmp))
            rows.append(row)
            print(
                f"{row['fault']:<20} {row['tried']:>6} {row['recovered']:>10} "
                f"{row['lost']:>5} {row['leaked']:>7} {row['seconds']:>6.1f}s",
                flush=True,
            )
            for message in row["failures"]:
                print(f"    not recovered: {message}")
    total = {k: sum(r[k] for r in rows) for k in ("tried", "recovered", "lost", "leaked")}
    print(
        f"{'all':<20} {total['tried']:>6} {total['recovered']:>10} {total['lost']:>5} "
        f"{total['leaked']:>7}"
    )
    if args.json:
        keep = ("fault", "tried", "recovered", "lost", "leaked")
        args.json.write_text(
            json.dumps({"rows": [{k: r[k] for k in keep} for r in rows]}, indent=2) + "\n"
        )
    ok = total["recovered"] == total["tried"] and total["lost"] == 0 and total["leaked"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
