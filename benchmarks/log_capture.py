"""What capturing a unit's output for the task log costs on a warm invocation.

The handler captures what a unit's functions print and log when the event asks for it
(``log_bytes``, as the Airflow operator does; :mod:`wisefuse_plugins.runtime.capture`).
This times the same warm invocation with and without it, for three units:

- ``silent``: one stage that prints nothing (the cost of patching the streams and logger);
- ``chatty``: one stage that prints 100 lines and logs 10 records;
- ``bundle``: a bundled unit of 8 instances on 2 threads (3538 MB), each printing 20 lines
  and logging 2 records;

in this process (``run_unit``, the handler's body: only the handler's own time) and on a
real local Lambda worker (``LocalLambda.invoke``: the response, larger by the log lines,
crosses the process boundary too). Prints the median and P95 of each, and the difference.

    .venv/bin/python benchmarks/log_capture.py [--calls 200]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from wisefuse_plugins.ir import Const, Item, Stage, Workflow, callable_ref, derive_edges
from wisefuse_plugins.plan.schema import Plan, Unit, hashes_of
from wisefuse_plugins.runtime import capture
from wisefuse_plugins.runtime import store as st
from wisefuse_plugins.runtime.backends.local import LocalLambda
from wisefuse_plugins.runtime.backends.units import LocalUnits
from wisefuse_plugins.runtime.executor import prepare
from wisefuse_plugins.runtime.handler import LoadedUnit, run_unit
from wisefuse_plugins.runtime.loader import load_callable
from wisefuse_plugins.runtime.spec import read_spec

APP = """
import logging

log = logging.getLogger(__name__)


def silent(n: int) -> int:
    return sum(range(n))


def chatty(n: int) -> int:
    for i in range(100):
        print(f"line {i} of {n}: some progress text of a typical length")
    for i in range(10):
        log.info("record %d of %d", i, n)
    return n


def numbers(n: int) -> list[int]:
    return list(range(n))


def each(x: int) -> int:
    for i in range(20):
        print(f"instance {x} line {i}: some progress text")
    log.warning("instance %d half way", x)
    log.info("instance %d done", x)
    return x
"""


def build(root: Path, work: Path) -> dict[str, tuple[LoadedUnit, Path, dict[str, Any], int]]:
    """The three units: (deployment, spec path, event, memory MB) by name."""
    (root / "bench_app.py").write_text(APP)
    spec = importlib.util.spec_from_file_location("bench_app", root / "bench_app.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    def stage(fn: Any, **kw: Any) -> Stage:
        return Stage(id=fn.__name__, callable=callable_ref(fn, root), **kw)

    store = st.LocalStore(work / "store")
    units: dict[str, tuple[LoadedUnit, Path, dict[str, Any], int]] = {}
    cases = {
        "silent": ([stage(mod.silent, bindings={"n": Const(value=1000)})], [["silent"]], {}),
        "chatty": ([stage(mod.chatty, bindings={"n": Const(value=7)})], [["chatty"]], {}),
        "bundle": (
            [
                stage(mod.numbers, bindings={"n": Const(value=8)}),
                stage(mod.each, bindings={"x": Item(stage="numbers")}, parallelism=8),
            ],
            [["numbers"], ["each"]],
            {"each": 8},
        ),
    }
    for name, (stages, groups, bundle) in cases.items():
        wf = Workflow(name=f"bench_{name}", stages=stages, edges=derive_edges(stages))
        plan = Plan(
            workflow=wf.name,
            units=[Unit(id="-".join(g), stages=g, bundle_size=bundle.get(g[0], 1)) for g in groups],
            code_hashes=hashes_of(wf),
        )
        paths = prepare(wf, plan, work / name)
        if name == "bundle":  # its input, stored once
            upstream = read_spec(paths["numbers"])
            dep = LoadedUnit(
                upstream, root, store, {"numbers": load_callable(upstream.stages[0].callable, root)}
            )
            assert run_unit(dep, {"run_id": "bench"}, 1769)["ok"]
        unit_id = groups[-1][0] if name == "bundle" else groups[0][0]
        spec_ = read_spec(paths[unit_id])
        fns = {s.id: load_callable(s.callable, root) for s in spec_.stages}
        event: dict[str, Any] = {"run_id": "bench"}
        if name == "bundle":
            event.update(instances=list(range(8)), counts={"numbers": 8})
        units[name] = (
            LoadedUnit(spec_, root, store, fns),
            paths[unit_id],
            event,
            3538 if name == "bundle" else 1769,
        )
    return units


def stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(0.95 * (len(ordered) - 1))]


def paired(without: Any, with_: Any, calls: int) -> tuple[list[float], list[float]]:
    """Wall ms of ``calls`` calls of each, alternated (drift and noise hit both alike)."""
    for _ in range(5):  # warm
        without(), with_()
    a, b = [], []
    for _ in range(calls):
        for call, out in ((without, a), (with_, b)):
            start = time.perf_counter()
            call()
            out.append((time.perf_counter() - start) * 1000)
    return a, b


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args(argv)
    logs = {"log_bytes": capture.LOG_BYTES}
    with tempfile.TemporaryDirectory(prefix="wisefuse-bench-logs-") as tmp:
        root, work = Path(tmp) / "code", Path(tmp) / "work"
        root.mkdir()
        units = build(root, work)
        print(f"log capture overhead, warm invocations, {args.calls} calls each (ms)")
        print("median and P95 without and with capture; diff of the medians; lines captured")
        rows = []
        saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the units print
        try:
            for name, (dep, _, event, mem) in units.items():
                without, with_ = paired(
                    lambda dep=dep, event=event, mem=mem: run_unit(dep, event, mem),
                    lambda dep=dep, event=event, mem=mem: run_unit(dep, {**event, **logs}, mem),
                    args.calls,
                )
                n = len(run_unit(dep, {**event, **logs}, mem)["logs"])
                rows.append((name, "in-process", without, with_, n))
            with LocalLambda(keep_alive_s=600, concurrency_limit=2) as lam:
                store_url = next(iter(units.values()))[0].store.url
                local = LocalUnits(lam, store_url, root, timeout_s=60)
                for name, (_, path, event, mem) in units.items():
                    fn = f"bench-{name}"
                    unit = Unit(id=fn, stages=["x"], memory_mb=mem)
                    local.deploy(unit, path)
                    billed: dict[bool, list[float]] = {False: [], True: []}

                    def call(
                        fn: str = fn,
                        event: dict = event,
                        billed: dict = billed,
                        logged: bool = False,
                    ) -> None:
                        inv = lam.invoke(fn, {**event, **logs} if logged else event)
                        assert inv.error is None and inv.payload["ok"], inv.error
                        billed[logged].append(inv.duration_ms)

                    without, with_ = paired(call, lambda c=call: c(logged=True), args.calls)
                    n = len(lam.invoke(fn, {**event, **logs}).payload["logs"])
                    rows.append((name, "worker", without, with_, n))
                    rows.append(
                        (
                            name,
                            "worker Lambda-equivalent duration",
                            billed[False][5:],
                            billed[True][5:],
                            n,
                        )
                    )
        finally:
            sys.stdout.close()
            sys.stdout, sys.stderr = saved
        for name, where, without, with_, n in rows:
            (m0, p0), (m1, p1) = stats(without), stats(with_)
            print(
                f"{name:7} {where:34} {m0:7.3f} (P95 {p0:6.3f})  {m1:7.3f} (P95 {p1:6.3f})  "
                f"{m1 - m0:+7.3f}  {n:4d} lines"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
