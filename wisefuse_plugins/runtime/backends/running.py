"""One invocation on a worker: send the event, wait within the timeout on Lambda's clock,
measure, bill, and say why a worker that did not answer died.

Time is Lambda-equivalent: wall time under a CPU quota (clock "cgroup"), else the worker's
sampled CPU and wall time converted to the function's share (clock "cpu-clock",
:mod:`.cpuclock`). A cold invocation first waits for the new worker to import its
handler (INIT, :meth:`Runner.init`); every outcome is an
:class:`~wisefuse_plugins.runtime.backends.invocation.Invocation` billed with
:mod:`wisefuse_plugins.plan.pricing`, with the end of the function's log.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wisefuse_plugins.plan import limits
from wisefuse_plugins.plan.pricing import Pricing, billed_ms, lambda_cost
from wisefuse_plugins.runtime.backends.cpuclock import CpuClock
from wisefuse_plugins.runtime.backends.environments import Function, Waited, Worker, destroy_worker
from wisefuse_plugins.runtime.backends.functions import LocalLambdaError
from wisefuse_plugins.runtime.backends.host import HostInfo
from wisefuse_plugins.runtime.backends.invocation import Invocation
from wisefuse_plugins.runtime.backends.spawning import cfs_bandwidth
from wisefuse_plugins.runtime.backends.worker import OOM_ERROR, read_frame, write_frame

LOG_TAIL_BYTES = 4096


@dataclass(frozen=True)
class Runner:
    """Runs invocations on the workers of one backend, with its settings (see ``LocalLambda``'s)."""

    host: HostInfo
    pricing: Pricing
    sample_interval_s: float
    init_boost: bool

    def wait(
        self,
        worker: Worker,
        budget_s: float,
        share: float,
        sampled: bool,
        *,
        request: tuple[dict[str, Any], bytes] | None = None,
        start: float | None = None,
    ) -> Waited:
        """Send ``request`` (if any) and wait for the worker's next frame within ``budget_s``.

        ``budget_s`` is in Lambda-equivalent time: wall time, unless ``sampled``
        (cpu-clock), where the worker's threads are sampled while it runs.
        """
        clock = CpuClock(worker.pid, share) if sampled else None
        start = time.perf_counter() if start is None else start
        if request is not None:
            try:
                write_frame(worker.req_w, *request)
            except OSError:  # the worker is gone (BrokenPipeError)
                if clock:
                    clock.tick()
                return Waited(None, start, time.perf_counter(), clock, False)
        poller = select.poll()
        poller.register(worker.resp_r, select.POLLIN | select.POLLHUP | select.POLLERR)
        # cpu-clock may run faster than Lambda (share > host cores): bound the wall time too
        hard_stop = start + budget_s * max(1.0, share / self.host.cores) + 1.0
        interval = 0.001
        while True:
            if clock:
                wait = min(interval, self.sample_interval_s)
                interval *= 2
            else:
                wait = budget_s - (time.perf_counter() - start)
            ready = poller.poll(max(0, math.ceil(wait * 1000)))
            if ready:
                frame = read_frame(worker.resp_r)
                if clock:
                    clock.tick()
                return Waited(frame, start, time.perf_counter(), clock, False)
            now = time.perf_counter()
            elapsed = clock.tick() if clock else now - start
            if elapsed >= budget_s or now >= hard_stop:
                return Waited(None, start, now, clock, True)

    def init(
        self, fn: Function, worker: Worker, rid: str, t_spawn: float
    ) -> tuple[float, dict[str, Any] | None]:
        """Wait for a new worker to import the handler: (init ms, error or None)."""
        cfg = fn.config
        # INIT budget: Lambda's 10 s, then a retry within the invocation's own timeout
        waited = self.wait(
            worker,
            limits.INIT_TIMEOUT_S + cfg.timeout_s,
            cfg.vcpus,
            fn.clock == "cpu-clock" and not self.init_boost,
            start=t_spawn,
        )
        frame = waited.frame
        ready = frame is not None and frame[0].get("kind") == "ready"
        init_ms = waited.measure(cfg.vcpus, end=frame[0]["t"] if ready else None)[0] * 1000
        if waited.timed_out:
            return init_ms, timeout_error(rid, cfg.timeout_s)
        if frame is None:
            return init_ms, death_error(worker)
        if not ready:
            return init_ms, frame[0].get("error") or death_error(worker)
        if fn.clock == "cgroup" and self.init_boost:
            worker.groups["cpu"].write("cpu.cfs_quota_us", cfs_bandwidth(cfg.vcpus)[1])
        return init_ms, None

    def run_on(
        self, fn: Function, worker: Worker, rid: str, body: bytes, init_ms: float | None
    ) -> tuple[Invocation, bool]:
        """One invocation on a ready worker: (outcome, whether the worker may be reused)."""
        cfg = fn.config
        share = cfg.vcpus
        sampled = fn.clock == "cpu-clock"
        if "memory" in worker.groups:
            with contextlib.suppress(OSError):
                worker.groups["memory"].write("memory.max_usage_in_bytes", 0)
        # a cold invocation's logs include what the handler module printed at import
        log_start = 0 if init_ms is not None else log_size(worker.log_path)
        waited = self.wait(
            worker,
            cfg.timeout_s,
            share,
            sampled,
            request=({"request_id": rid, "timeout_s": cfg.timeout_s}, body),
        )
        logs = log_tail(worker.log_path, log_start)
        if waited.frame is None:  # timed out, or the worker died
            eq, wall, wait, cpu = waited.measure(share)
            if waited.timed_out:
                peak = peak_from_cgroup(worker)
                destroy_worker(worker)
                error, duration_ms = timeout_error(rid, cfg.timeout_s), cfg.timeout_s * 1000
            else:
                error, duration_ms = death_error(worker), eq * 1000
                oom = error["errorType"] == "Runtime.OutOfMemory"
                peak = cfg.memory_mb if oom else peak_from_cgroup(worker)
            inv = self.result(
                fn,
                worker,
                rid,
                error=error,
                duration_ms=duration_ms,
                init_ms=init_ms,
                wall_ms=wall * 1000,
                cpu_ms=cpu * 1000,
                peak_mb=peak,
                logs=logs,
                host_wait_ms=None if wait is None else wait * 1000,
            )
            return inv, False
        meta, payload_bytes = waited.frame
        error = meta.get("error")
        eq, wall, wait, _ = waited.measure(
            share, meta["t_start"], meta["t_end"], cpu_fallback=meta["cpu_ms"] / 1000
        )
        oom = bool(error) and error.get("errorType") == "Runtime.OutOfMemory"
        payload = json.loads(payload_bytes) if error is None and payload_bytes else None
        if waited.clock is not None and waited.clock.available:
            equivalent_timings(payload, waited.clock)
        inv = self.result(
            fn,
            worker,
            rid,
            payload=payload,
            error=error,
            duration_ms=eq * 1000,
            init_ms=init_ms,
            wall_ms=wall * 1000,
            cpu_ms=float(meta.get("cpu_ms", 0.0)),
            peak_mb=cfg.memory_mb if oom else math.ceil(meta.get("max_rss_kb", 0) / 1024),
            logs=logs,
            host_wait_ms=None if wait is None else wait * 1000,
        )
        return inv, not meta.get("fatal", False)

    def result(
        self,
        fn: Function,
        worker: Worker,
        rid: str,
        *,
        payload: Any = None,
        error: dict[str, Any] | None = None,
        duration_ms: float = 0.0,
        init_ms: float | None = None,
        wall_ms: float = 0.0,
        cpu_ms: float = 0.0,
        peak_mb: int = 0,
        logs: str = "",
        host_wait_ms: float | None = None,
    ) -> Invocation:
        cfg = fn.config
        billed = billed_ms(duration_ms, init_ms, self.pricing)
        return Invocation(
            request_id=rid,
            function_name=cfg.name,
            payload=payload,
            error=error,
            duration_ms=duration_ms,
            billed_duration_ms=billed,
            init_duration_ms=init_ms,
            max_memory_used_mb=peak_mb,
            memory_size_mb=cfg.memory_mb,
            arch=cfg.arch,
            cold=init_ms is not None,
            cost_usd=lambda_cost(billed, cfg.memory_mb, cfg.arch, self.pricing),
            clock=fn.clock,
            memory_mode=fn.memory_mode,
            worker_pid=worker.pid,
            wall_ms=wall_ms,
            cpu_ms=cpu_ms,
            logs=logs,
            host_wait_ms=host_wait_ms,
        )


def peak_from_cgroup(worker: Worker) -> int:
    """The worker's peak memory in MB, from its memory cgroup (0 without one)."""
    g = worker.groups.get("memory")
    return math.ceil(g.read_int("memory.max_usage_in_bytes") / 2**20) if g else 0


def death_error(worker: Worker) -> dict[str, Any]:
    """Why a worker died: the cgroup OOM killer, or an exit status / signal."""
    try:
        rc = worker.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        rc = None
    g = worker.groups.get("memory")
    if g is not None and g.read_keyed("memory.oom_control").get("oom_kill", 0) > 0:
        return dict(OOM_ERROR)
    if rc == 97 and worker.groups:
        raise LocalLambdaError(f"could not move a worker into its cgroups {list(worker.groups)}")
    if rc is not None and rc < 0:
        try:
            sig = _SIGNAL_NAMES.get(-rc) or signal.Signals(-rc).name.lower()
        except ValueError:
            sig = str(-rc)
        msg = f"Runtime exited with error: signal: {sig}"
    else:
        msg = f"Runtime exited with error: exit status {rc}"
    return {"errorType": "Runtime.ExitError", "errorMessage": msg, "stackTrace": []}


_SIGNAL_NAMES = {
    signal.SIGKILL: "killed",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGABRT: "aborted",
    signal.SIGTERM: "terminated",
    signal.SIGBUS: "bus error",
}


def equivalent_timings(payload: Any, clock: CpuClock) -> None:
    """Add ``fn_eq_ms`` to each handler timing: its function's span on the CPU-time clock.

    The invocation's conversion factor would not do for one function: the invocation's
    store requests are waits the share does not slow, so at a small share its factor is
    below the function's and the profiled time came out short.
    """
    if not isinstance(payload, dict):
        return
    for t in payload.get("timings") or []:
        span = t.get("fn_t") if isinstance(t, dict) else None
        if isinstance(span, list) and len(span) == 2:
            t["fn_eq_ms"] = round(clock.window(span[0], span[1], prorate=True)[0] * 1000, 3)


def timeout_error(rid: str, timeout_s: float) -> dict[str, Any]:
    return {
        "errorType": "Sandbox.Timedout",
        "errorMessage": f"RequestId: {rid} Error: Task timed out after {timeout_s:.2f} seconds",
        "stackTrace": [],
    }


def log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def log_tail(path: Path, start: int) -> str:
    """What was written to the log since ``start``, at most the last 4 KB (as LogType=Tail)."""
    try:
        with open(path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            f.seek(max(start, end - LOG_TAIL_BYTES))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""
