"""Calibrate the model's platform constants for the local backend, on this machine.

The model needs, besides stage profiles, what moving data and starting an invocation
cost where the plan will run. On AWS those are S3's and Lambda's (the ``Platform``
defaults); for the embedded local backend they are this machine's, so they are measured
in real workers, as a unit meets them:

- per warm invocation, the runtime's own work outside any stage (event, spec, response):
  a no-op unit's Lambda-equivalent duration;
- per store request, a unit that PUTs ``1 + k`` objects (its output, scattered into ``k``
  elements) and a bundle of ``k`` instances that GET one element and PUT one result
  each, less the no-op's duration;

each at two memory sizes (512 and 1769 MB), so that the part that grows with a small CPU
share (``1 / min(v, 1)``: Python, pickling, system calls) is told from the part that
does not (a PUT's fsync): ``invoke_overhead_ms + invoke_cpu_ms / min(v, 1)`` per
invocation, ``store_latency_ms`` (GET) or ``put_latency_ms`` (PUT) ``+ store_cpu_ms /
min(v, 1)`` per request. At 1024 MB a unit of an example app spent 3-9 ms per invocation
there, where one constant measured in-process (0.2 ms) had the model short by up to 30%.

- ``store_bandwidth_mb_s``: MB (10^6 bytes) per second of one stream, from PUTs and GETs
  of an 8 MB object through the store interface in this process, after taking the
  per-request latency off;
- ``orchestration_ms``: per invocation, what the caller waits beyond that duration
  (pipes, worker hand-off, response decoding): the unbilled step between "upstream done"
  and "unit running" of the local executor.
"""

from __future__ import annotations

import hashlib
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from wisefuse_plugins.ir import CallableRef, Stage, Workflow
from wisefuse_plugins.model.profile import Platform
from wisefuse_plugins.plan.limits import vcpus
from wisefuse_plugins.plan.schema import Plan, Unit
from wisefuse_plugins.profiles.archive import Archive
from wisefuse_plugins.runtime import store as st
from wisefuse_plugins.runtime.backends.local import LocalLambda
from wisefuse_plugins.runtime.backends.units import LocalUnits
from wisefuse_plugins.runtime.passing import BY_VALUE_BYTES
from wisefuse_plugins.runtime.spec import unit_spec, write_spec

SMALL_BYTES = 1024
LARGE_BYTES = 8 * 1024 * 1024
NOOP_SOURCE = 'def noop():\n    """Does nothing: what is left is the runtime\'s own cost."""\n    return None\n'
NOOP_UNIT = "wisefuse-calibrate-noop"


def _time_store(store: st.Store, size: int, repeats: int) -> tuple[float, float]:
    """Median seconds of a PUT and of a GET of ``size`` bytes."""
    data = bytes(range(256)) * (size // 256) + b"\0" * (size % 256)
    prefix = f"calibration/c{uuid.uuid4().hex[:10]}"
    puts, gets = [], []
    try:
        for i in range(repeats):
            key = f"{prefix}/o{size}-{i}"
            t = time.perf_counter()
            store.put_bytes(key, data)
            puts.append(time.perf_counter() - t)
            t = time.perf_counter()
            got = store.get_bytes(key)
            gets.append(time.perf_counter() - t)
            assert len(got) == size
    finally:
        store.delete_prefix(prefix)
    return statistics.median(puts), statistics.median(gets)


def measure_store(
    store: st.Store, *, repeats: int = 20, large_repeats: int = 3
) -> tuple[float, float]:
    """(latency ms per request, bandwidth MB/s) of ``store``."""
    put_s, get_s = _time_store(store, SMALL_BYTES, repeats)
    latency_s = (put_s + get_s) / 2
    put_l, get_l = _time_store(store, LARGE_BYTES, large_repeats)
    transfer_s = max((put_l + get_l) / 2 - latency_s, 1e-6)
    return latency_s * 1000, LARGE_BYTES / 1e6 / transfer_s


def measure_invoke(
    lam: LocalLambda, store: st.Store, *, memory_mb: int = 1769, repeats: int = 20
) -> tuple[float, float, float]:
    """(overhead ms, dispatch ms, cold-start INIT ms) of a no-op unit on ``lam``."""
    with tempfile.TemporaryDirectory(prefix="wisefuse-calibrate-") as tmp:
        root = Path(tmp)
        (root / "wisefuse_noop.py").write_text(NOOP_SOURCE, encoding="utf-8")
        ref = CallableRef(
            path="wisefuse_noop.py",
            qualname="noop",
            code_hash=hashlib.sha256(NOOP_SOURCE.encode()).hexdigest(),
        )
        workflow = Workflow(name="wisefuse-calibrate", stages=[Stage(id=NOOP_UNIT, callable=ref)])
        unit = Unit(id=NOOP_UNIT, stages=[NOOP_UNIT], memory_mb=memory_mb)
        plan = Plan(workflow=workflow.name, units=[unit])
        spec = write_spec(unit_spec(workflow, plan, NOOP_UNIT), root / "noop.unit.json")
        units = LocalUnits(lam, store.url, root, timeout_s=60)
        units.deploy(unit, spec)
        overhead, dispatch, init = [], [], 0.0
        for i in range(repeats + 1):
            run_id = f"calibrate-{uuid.uuid4().hex[:10]}"
            t = time.perf_counter()
            inv = lam.invoke(NOOP_UNIT, {"run_id": run_id})
            client_ms = (time.perf_counter() - t) * 1000
            store.delete_prefix(f"runs/{run_id}")
            if inv.error is not None or not (inv.payload or {}).get("ok"):
                raise RuntimeError(f"the calibration no-op failed: {inv.error or inv.payload}")
            if i == 0:  # the cold start: its INIT, not an overhead sample
                init = inv.init_duration_ms or 0.0
                continue
            stage_ms = sum(t["ms"] for t in inv.payload.get("timings", []))
            ratio = inv.duration_ms / inv.wall_ms if inv.wall_ms > 0 else 1.0
            overhead.append(max(inv.duration_ms - stage_ms * ratio, 0.0))
            dispatch.append(max(client_ms - inv.duration_ms / ratio, 0.0))
    return statistics.median(overhead), statistics.median(dispatch), init


IO_FUNCTIONS = {
    "noop": '''def noop():
    """Does nothing: what is left is the runtime's own cost."""
    return None
''',
    "spread": '''def spread(k):
    """k small elements: a unit mapping over them makes this one PUT 1 + k objects."""
    return list(range(k))
''',
    "ident": '''def ident(x):
    """One small GET and one small PUT per instance."""
    return x
''',
}
IO_MEMORIES = (512, 1769)
IO_ELEMENTS = 16


@dataclass(frozen=True)
class RequestCosts:
    """Fitted ``fixed + cpu / min(v, 1)`` ms per invocation, GET and PUT."""

    invoke_ms: float
    invoke_cpu_ms: float
    get_ms: float
    put_ms: float
    cpu_ms: float  # per request, GET and PUT alike (their mean)


def _fit_share(points: dict[float, float]) -> tuple[float, float]:
    """(fixed, cpu) with ``y = fixed + cpu * x`` through two (x = 1 / min(v, 1), y) points;
    both kept >= 0 (noise can tilt two points the wrong way)."""
    (x1, y1), (x2, y2) = sorted(points.items())
    cpu = max((y2 - y1) / (x2 - x1), 0.0) if x2 > x1 else 0.0
    fixed = max(min(y1, y2) - cpu * min(x1, x2), 0.0)
    return fixed, cpu


def measure_requests(
    lam: LocalLambda,
    store: st.Store,
    *,
    repeats: int = 10,
    elements: int = IO_ELEMENTS,
    memories: tuple[int, int] = IO_MEMORIES,
) -> RequestCosts:
    """Per invocation and per store request, as real workers at two sizes spend them."""
    from wisefuse_plugins.ir import Const, Item, derive_edges
    from wisefuse_plugins.runtime.executor import execute

    with tempfile.TemporaryDirectory(prefix="wisefuse-calibrate-") as tmp:
        root = Path(tmp)
        (root / "wisefuse_io.py").write_text("\n\n".join(IO_FUNCTIONS.values()), encoding="utf-8")

        def ref(name: str) -> CallableRef:
            code_hash = hashlib.sha256(IO_FUNCTIONS[name].encode()).hexdigest()
            return CallableRef(path="wisefuse_io.py", qualname=name, code_hash=code_hash)

        stages = [
            Stage(id="noop", callable=ref("noop")),
            Stage(id="spread", callable=ref("spread"), bindings={"k": Const(value=elements)}),
            Stage(
                id="ident",
                callable=ref("ident"),
                bindings={"x": Item(stage="spread")},
                parallelism=elements,
            ),
        ]
        workflow = Workflow(name="wisefuse-calibrate-io", stages=stages, edges=derive_edges(stages))
        units = LocalUnits(lam, store.url, root, timeout_s=60)
        invoke, get, put = {}, {}, {}
        for memory in memories:
            plan = Plan(
                workflow=workflow.name,
                units=[
                    Unit(id=f"cal-noop-{memory}", stages=["noop"], memory_mb=memory),
                    Unit(id=f"cal-spread-{memory}", stages=["spread"], memory_mb=memory),
                    Unit(
                        id=f"cal-ident-{memory}",
                        stages=["ident"],
                        memory_mb=memory,
                        bundle_size=elements,
                    ),
                ],
            )
            noop, puts, gets = [], [], []
            for i in range(repeats + 1):
                run = execute(workflow, plan, units, store, workdir=root / "units")
                store.delete_prefix(f"runs/{run.run_id}")
                if i == 0:
                    continue  # cold starts
                ms = {c.unit.split("-")[1]: c.invoked.duration_ms for c in run.calls}
                per_put = max(ms["spread"] - ms["noop"], 0.0) / (1 + elements)
                noop.append(ms["noop"])
                puts.append(per_put)
                gets.append(max(ms["ident"] - ms["noop"] - elements * per_put, 0.0) / elements)
            x = 1 / min(vcpus(memory), 1.0)
            invoke[x] = statistics.median(noop)
            put[x] = statistics.median(puts)
            get[x] = statistics.median(gets)
    invoke_ms, invoke_cpu = _fit_share(invoke)
    get_ms, get_cpu = _fit_share(get)
    put_ms, put_cpu = _fit_share(put)
    return RequestCosts(invoke_ms, invoke_cpu, get_ms, put_ms, (get_cpu + put_cpu) / 2)


def calibrate_local(
    store: st.Store,
    lam: LocalLambda,
    *,
    archive: Archive | None = None,
    memory_mb: int = 1769,
    repeats: int = 20,
) -> Platform:
    """Measure this machine's store and invocation costs; save them as platform ``local``.

    Costs stay Lambda + S3-equivalent (``bill_store_requests=True``); the local executor
    has no orchestrator to pay (``orchestration_usd_per_step=0``). With ``archive`` the
    result is saved there (:meth:`Archive.save_platform`), else in the default archive.
    """
    _, bandwidth = measure_store(store, repeats=repeats)
    _, dispatch_ms, _ = measure_invoke(lam, store, memory_mb=memory_mb, repeats=repeats)
    costs = measure_requests(lam, store, repeats=max(5, repeats // 2))
    platform = Platform(
        name="local",
        store_latency_ms=round(costs.get_ms, 4),
        put_latency_ms=round(costs.put_ms, 4),
        store_cpu_ms=round(costs.cpu_ms, 4),
        store_bandwidth_mb_s=round(bandwidth, 1),
        invoke_overhead_ms=round(costs.invoke_ms, 3),
        invoke_cpu_ms=round(costs.invoke_cpu_ms, 3),
        orchestration_ms=round(dispatch_ms, 3),
        orchestration_usd_per_step=0.0,
        cold_probability=0.0,
        max_concurrency=lam.concurrency_limit,
        max_vcpus=float(lam.host.cores),
        bill_store_requests=True,
        by_value_bytes=float(BY_VALUE_BYTES),  # the local executor passes small values
    )
    if archive is not None:
        archive.save_platform(platform)
    else:
        with Archive() as own:
            own.save_platform(platform)
    return platform


def load_platform(name: str = "local", archive: Archive | None = None) -> Platform | None:
    """The calibrated constants of ``name`` from ``archive`` (or the default one), if any."""
    if archive is not None:
        return archive.load_platform(name)
    with Archive() as own:
        return own.load_platform(name)
