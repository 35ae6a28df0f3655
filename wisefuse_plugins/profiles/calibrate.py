"""Calibrate the model's platform constants for the local backend, on this machine.

The model needs, besides stage profiles, what moving data and starting an invocation
cost where the plan will run. On AWS those are S3's and Lambda's (the ``Platform``
defaults); for the embedded local backend they are this machine's, so they are measured:

- ``store_latency_ms``: median time of one PUT or GET of a 1 KB object (the mean of the
  two medians): the per-request cost of the store, independent of size;
- ``store_bandwidth_mb_s``: MB (10^6 bytes) per second of one stream, from PUTs and GETs
  of an 8 MB object, after taking the per-request latency off;
- ``invoke_overhead_ms``: per warm invocation of a no-op unit, the Lambda-equivalent
  duration the handler spends outside the stage (runtime, event parsing, bookkeeping):
  billed, and paid by every invocation whatever it runs;
- ``orchestration_ms``: per invocation, what the caller waits beyond that duration
  (pipes, worker hand-off, response decoding): the unbilled step between "upstream done"
  and "unit running" of the local executor.

Store figures are timed in this process through the store interface (no pickling, no
CPU quota), so they are the store's own; the handler's pickling of large values at small
CPU shares is part of the stage's measured ``ms``, not of these constants.
"""

from __future__ import annotations

import hashlib
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from wisefuse_plugins.ir import CallableRef, Stage, Workflow
from wisefuse_plugins.model.profile import Platform
from wisefuse_plugins.optimizer.plan import Plan, Unit
from wisefuse_plugins.profiles.archive import Archive
from wisefuse_plugins.runtime import store as st
from wisefuse_plugins.runtime.backends.local import LocalLambda
from wisefuse_plugins.runtime.backends.units import LocalUnits
from wisefuse_plugins.runtime.spec import unit_spec, write_spec

SMALL_BYTES = 1024
LARGE_BYTES = 8 * 1024 * 1024
NOOP_SOURCE = 'def noop():\n    """Does nothing: what is left is the runtime\'s own cost."""\n    return None\n'
NOOP_UNIT = "wisefuse-calibrate-noop"


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


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
        units.deploy(unit, spec, workflow)
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
    latency_ms, bandwidth = measure_store(store, repeats=repeats)
    overhead_ms, dispatch_ms, _ = measure_invoke(lam, store, memory_mb=memory_mb, repeats=repeats)
    platform = Platform(
        name="local",
        store_latency_ms=round(latency_ms, 4),
        store_bandwidth_mb_s=round(bandwidth, 1),
        invoke_overhead_ms=round(overhead_ms, 3),
        orchestration_ms=round(dispatch_ms, 3),
        orchestration_usd_per_step=0.0,
        cold_probability=0.0,
        max_concurrency=lam.concurrency_limit,
        bill_store_requests=True,
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
