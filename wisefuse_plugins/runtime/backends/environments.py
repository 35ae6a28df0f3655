"""Execution environments: the worker processes that play Lambda's, their pool and lifecycle.

A :class:`Worker` is one environment (cold when started, warm while idle in the
:class:`Pool`, retired after the keep-alive window by :func:`reap_idle`, destroyed with
its cgroups and pipes when it crashes, times out or the backend closes). How workers are
started is :mod:`.spawning`'s, how an invocation runs on one :mod:`.running`'s.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wisefuse_plugins.runtime.backends import cgroups
from wisefuse_plugins.runtime.backends.cpuclock import CpuClock, equivalent_s
from wisefuse_plugins.runtime.backends.forkserver import ForkedProcess, ForkServer
from wisefuse_plugins.runtime.backends.functions import FunctionConfig

TMP_PREFIX = "wisefuse-local-"  # + owner pid and pid namespace: the workers' log folder


@dataclass
class Function:
    config: FunctionConfig
    generation: int
    clock: str
    memory_mode: str


@dataclass(eq=False)
class Worker:
    fn: Function
    proc: subprocess.Popen[bytes] | ForkedProcess  # spawned, or forked by the fork server
    req_w: int
    resp_r: int
    life_w: int
    groups: dict[str, cgroups.Cgroup]
    log_path: Path
    last_used: float = 0.0
    dead: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def reusable(self) -> bool:
        """Alive, and not forked by a fork server that has died since (its exit status
        would be unknown): such workers finish their invocation and are retired."""
        if isinstance(self.proc, ForkedProcess) and self.proc.orphaned:
            return False
        return self.proc.poll() is None


@dataclass
class Waited:
    """What waiting for a worker's frame gave, on the parent's clock (CLOCK_MONOTONIC)."""

    frame: tuple[dict[str, Any], bytes] | None  # None: timed out or the worker died
    start: float
    end: float
    clock: CpuClock | None  # cpu-clock samples, if sampled
    timed_out: bool

    def measure(
        self,
        share: float,
        start: float | None = None,
        end: float | None = None,
        cpu_fallback: float = 0.0,
    ) -> tuple[float, float, float | None, float]:
        """(equivalent s, wall s, host wait s, CPU s) over [start, end], by default the
        whole wait; the worker's own timestamps keep the parent's wake-up latency out."""
        lo = self.start if start is None else start
        hi = self.end if end is None else end
        wall = max(hi - lo, 0.0)
        if self.clock is None:
            return wall, wall, None, cpu_fallback
        if not self.clock.available:  # no schedstat: the whole-run formula, no wait known
            return equivalent_s(wall, cpu_fallback, 0.0, share), wall, None, cpu_fallback
        eq, cpu, delay = self.clock.window(lo, hi)
        return eq, wall, delay, cpu


_teardown_lock = threading.Lock()


def kill_worker(worker: Worker) -> None:
    """SIGKILL a worker's process group and whatever else is in its cgroups."""
    if isinstance(worker.proc, ForkedProcess):
        worker.proc.kill()  # by pidfd: the very process, whatever happened to its pid
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(worker.pid, signal.SIGKILL)
    for group in worker.groups.values():
        for pid in group.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def destroy_worker(worker: Worker) -> None:
    """Kill a worker, its children and its cgroups, close its pipes; once, never raises.

    Only the thread that owns the worker (its invoker, or whoever took it from the idle
    pool) calls this: closing the pipes under another thread's feet could close a reused
    fd number.
    """
    with _teardown_lock:
        if worker.dead:
            return
        worker.dead = True
    kill_worker(worker)
    with contextlib.suppress(subprocess.TimeoutExpired):
        worker.proc.wait(timeout=10)
    if isinstance(worker.proc, ForkedProcess):
        worker.proc.close()  # the fork server may reap it now
    for fd in (worker.req_w, worker.resp_r, worker.life_w):
        with contextlib.suppress(OSError):
            os.close(fd)
    for group in worker.groups.values():
        group.remove()
    with contextlib.suppress(OSError):
        worker.log_path.unlink()


class Pool:
    """Everything the cleanup needs, kept apart from LocalLambda so a finalizer can own it."""

    def __init__(self, limit: int) -> None:
        self.cond = threading.Condition()
        self.limit = limit
        self.workers: set[Worker] = set()
        self.idle: dict[str, list[Worker]] = {}
        self.busy = 0  # running invocations, including workers being started
        self.closed = False
        owner = f"{TMP_PREFIX}{os.getpid()}-{cgroups.pid_namespace()}-"
        self.tmpdir = Path(tempfile.mkdtemp(prefix=owner))
        self.stop = threading.Event()
        # the fork server (preload): started lazily under fs_lock; None when not running
        self.forkserver: ForkServer | None = None
        self.fs_lock = threading.Lock()
        self.fs_disabled: str | None = None  # why preloading was given up, for good
        self.fs_starts = 0

    def take_idle(self, predicate: Any) -> list[Worker]:
        """Remove (under the lock) and return idle workers matching ``predicate``."""
        out = []
        for name, pool in list(self.idle.items()):
            keep = [w for w in pool if not predicate(w)]
            out += [w for w in pool if predicate(w)]
            self.idle[name] = keep
        for w in out:
            self.workers.discard(w)
        return out

    def shutdown(self) -> None:
        """Close: idle workers are destroyed here; busy ones are killed, and their invoking
        threads (which see the worker die) destroy them; stragglers after 10 s go anyway."""
        with self.cond:
            self.closed = True
            idle = [w for pool in self.idle.values() for w in pool]
            self.idle.clear()
            self.workers.difference_update(idle)
            busy = list(self.workers)
            self.cond.notify_all()
        self.stop.set()
        for w in idle:
            destroy_worker(w)
        for w in busy:
            kill_worker(w)
        with self.cond:
            self.cond.wait_for(lambda: not self.workers, timeout=10)
            stragglers = list(self.workers)
            self.workers.clear()
        for w in stragglers:
            destroy_worker(w)
        with self.cond:  # after the workers: their exit statuses come through it
            fs, self.forkserver = self.forkserver, None
        if fs is not None:
            fs.close()
        shutil.rmtree(self.tmpdir, ignore_errors=True)


def reap_idle(state: Pool, keep_alive_s: float) -> None:
    """Retire workers idle for longer than the keep-alive window, as Lambda does."""
    period = min(max(keep_alive_s / 4, 0.05), 30.0)
    while not state.stop.wait(period):
        now = time.monotonic()
        with state.cond:
            expired = state.take_idle(lambda w, now=now: now - w.last_used > keep_alive_s)
        for w in expired:
            destroy_worker(w)


def sweep_tmpdirs() -> None:
    """Remove log folders left by backends whose process was killed before closing."""
    for d in Path(tempfile.gettempdir()).glob(f"{TMP_PREFIX}*"):
        if cgroups.owner_gone(d.name, TMP_PREFIX):
            shutil.rmtree(d, ignore_errors=True)
