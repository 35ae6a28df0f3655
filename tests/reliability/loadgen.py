"""Load: many workflow runs at once on one local backend, and many writers of one profile
archive at once. Shared by test_load.py and ``benchmarks/load.py``.

Runs: ``variants`` copies of ``seeded -> crunch (mapped, bundled) -> checksum``, each
with its own seed, so a value that crossed from one run or variant into another would
change a checksum; every run's result is compared with the plain Python result, and every
key a finished run must have is checked in the store.

Archive: writer processes (and threads) each record their own samples (a unique ``ref``
each) in batches, all at once, into one SQLite archive; afterwards every sample must be
there exactly once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from wisefuse_plugins.ir import Collect, Const, Item, Workflow, derive_edges
from wisefuse_plugins.plan.schema import Plan, Unit, hashes_of
from wisefuse_plugins.runtime import store as st
from wisefuse_plugins.runtime.backends.local import LocalLambda
from wisefuse_plugins.runtime.backends.units import LocalUnits
from wisefuse_plugins.runtime.executor import RunFailed, execute

from .faulty import faulty_app
from .harness import ROOT, stage

REPO = Path(__file__).resolve().parents[2]


def variant_workflow(k: int, n: int) -> Workflow:
    seed = 1000 + k
    stages = [
        stage(faulty_app.seeded, bindings={"n": Const(value=n), "seed": Const(value=seed)}),
        stage(faulty_app.crunch, bindings={"v": Item(stage="seeded")}, parallelism=n),
        stage(
            faulty_app.checksum,
            bindings={"values": Collect(stage="crunch"), "seed": Const(value=seed)},
        ),
    ]
    return Workflow(name=f"load{k}", stages=stages, edges=derive_edges(stages))


def variant_plan(wf: Workflow, k: int, bundle: int) -> Plan:
    units = [
        Unit(id=f"v{k}-{sid}", stages=[sid], bundle_size=bundle if sid == "crunch" else 1)
        for sid in ("seeded", "crunch", "checksum")
    ]
    return Plan(workflow=wf.name, units=units, code_hashes=hashes_of(wf))


def expected(k: int, n: int) -> dict:
    seed = 1000 + k
    values = [faulty_app.crunch(v) for v in faulty_app.seeded(n, seed)]
    return faulty_app.checksum(values, seed)


def run_keys(run_id: str, n: int) -> list[str]:
    keys = [f"runs/{run_id}/seeded/out.pkl", f"runs/{run_id}/checksum/out.pkl"]
    keys += [f"runs/{run_id}/seeded/e{i}.pkl" for i in range(n)]
    keys += [f"runs/{run_id}/crunch/i{i}.pkl" for i in range(n)]
    return keys


@dataclass
class LoadResult:
    runs: int
    completed: int = 0
    wrong: int = 0  # completed with a result other than the plain one
    failed: list[str] = field(default_factory=list)  # RunFailed messages
    lost_outputs: int = 0  # keys a completed run must have that the store lacks
    wall_s: float = 0.0
    cold_starts: int = 0
    invocations: int = 0

    @property
    def runs_per_s(self) -> float:
        return self.completed / self.wall_s if self.wall_s else 0.0


def run_load(
    lam: LocalLambda,
    store: st.LocalStore,
    workdir: Path,
    *,
    runs: int = 50,
    concurrency: int = 8,
    variants: int = 2,
    n: int = 8,
    bundle: int = 4,
) -> LoadResult:
    """``runs`` runs, ``concurrency`` at a time, over ``variants`` deployed workflows.

    Each run deploys its plan as the executor does (specs written into the variant's
    shared folder, functions registered when their configuration changed), so concurrent
    runs also race on deploying.
    """
    cases = [(variant_workflow(k, n), k) for k in range(variants)]
    plans = {k: variant_plan(wf, k, bundle) for wf, k in cases}
    units = LocalUnits(lam, store.url, ROOT, timeout_s=120)
    lock = threading.Lock()
    out = LoadResult(runs=runs)

    def one(i: int) -> None:
        wf, k = cases[i % variants]
        run_id = f"load-{i}"
        try:
            result = execute(wf, plans[k], units, store, workdir=workdir / wf.name, run_id=run_id)
        except RunFailed as failed:
            with lock:
                out.failed.append(str(failed))
            return
        missing = sum(not store.exists(key) for key in run_keys(run_id, n))
        with lock:
            out.completed += 1
            out.wrong += result.outputs["checksum"] != expected(k, n)
            out.lost_outputs += missing
            out.invocations += len(result.calls)
            out.cold_starts += sum(c.invoked.cold for c in result.calls)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for f in [pool.submit(one, i) for i in range(runs)]:
            f.result()
    out.wall_s = time.perf_counter() - start
    return out


# --------------------------------------------------------------------------- archive

WRITER = """
import sys, time
from wisefuse_plugins.profiles.archive import Archive, Sample
url, name, count, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
with Archive(url) as archive:
    for start in range(0, count, batch):
        archive.add(
            Sample(workflow="load", stage=f"s{i % 3}", code_hash="a" * 64,
                   memory_mb=(512, 1769, 3538)[i % 3], duration_ms=float(i),
                   ref=f"{name}-{i}")
            for i in range(start, min(start + batch, count))
        )
"""


@dataclass
class ArchiveLoad:
    expected: int
    found: int
    distinct: int
    re_added: int  # samples added again by ref: must be 0
    wall_s: float

    @property
    def lost(self) -> int:
        return self.expected - self.distinct


def archive_load(
    url: str, *, processes: int = 4, threads: int = 2, per_writer: int = 300, batch: int = 25
) -> ArchiveLoad:
    """Write from ``processes`` processes and ``threads`` threads of this one at once."""
    from wisefuse_plugins.profiles.archive import Archive, Sample

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, url, f"p{i}", str(per_writer), str(batch)], env=env
        )
        for i in range(processes)
    ]

    def write(name: str) -> None:
        with Archive(url) as archive:
            for lo in range(0, per_writer, batch):
                archive.add(
                    Sample(
                        workflow="load",
                        stage=f"s{i % 3}",
                        code_hash="a" * 64,
                        memory_mb=(512, 1769, 3538)[i % 3],
                        duration_ms=float(i),
                        ref=f"{name}-{i}",
                    )
                    for i in range(lo, min(lo + batch, per_writer))
                )

    pool = [threading.Thread(target=write, args=(f"t{i}",)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    codes = [p.wait() for p in procs]
    wall = time.perf_counter() - start
    if any(codes):
        raise RuntimeError(f"archive writer processes failed: exit codes {codes}")
    with Archive(url) as archive:
        rows = archive.samples("load")
        again = archive.add(  # a re-import of the same history records nothing new
            Sample(
                workflow="load",
                stage="s0",
                code_hash="a" * 64,
                memory_mb=512,
                duration_ms=0.0,
                ref=f"p0-{i}",
            )
            for i in range(per_writer)
        )
    refs = [r.ref for r in rows]
    return ArchiveLoad(
        expected=(processes + threads) * per_writer,
        found=len(refs),
        distinct=len(set(refs)),
        re_added=again,
        wall_s=wall,
    )
