"""The embedded local backend: AWS Lambda on this machine, for real.

A :class:`LocalLambda` runs *functions* (name, handler, memory, architecture, timeout,
environment), not plan units: like Lambda it knows nothing of the workflow. Each
invocation runs in a worker process that plays one execution environment: it is
started cold (interpreter + handler import, measured as INIT), reused warm within a
keep-alive window, runs one invocation at a time, and is replaced when it crashes,
times out or runs out of memory. Memory is limited per worker (cgroup v1 memory
controller, else RLIMIT_AS) and CPU is given Lambda's share of memory / 1769 vCPUs either
for real (cgroup v1 CPU quota, clock "cgroup") or by converting an unthrottled run's CPU
and wall time (clock "cpu-clock", see :mod:`.cpuclock`). Every invocation is billed with
:mod:`wisefuse_plugins.plan.pricing`. With ``preload``, new workers are forked from a
fork server that imported heavy modules once (:mod:`.forkserver`) instead of spawned. How
it works and how it differs from Lambda: docs/local-backend.md.

This module is the facade and the invoke path (start a worker, send the event, wait,
measure, bill); the ideas it uses have their own modules: :mod:`.functions` (a function's
configuration and environment, request errors), :mod:`.environments` (workers, their pool,
keep-alive and teardown), :mod:`.host` (what this machine can enforce), :mod:`.invocation`
(the result and its REPORT line), :mod:`.cgroups` and :mod:`.cpuclock` (CPU and memory).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from wisefuse_plugins.plan import limits
from wisefuse_plugins.plan.pricing import DEFAULT as DEFAULT_PRICING
from wisefuse_plugins.plan.pricing import Pricing, billed_ms, lambda_cost
from wisefuse_plugins.runtime.backends import cgroups
from wisefuse_plugins.runtime.backends.cpuclock import CpuClock
from wisefuse_plugins.runtime.backends.environments import (
    Function,
    Pool,
    Waited,
    Worker,
    destroy_worker,
    reap_idle,
    sweep_tmpdirs,
)
from wisefuse_plugins.runtime.backends.forkserver import ForkedProcess, ForkServer, ForkServerError
from wisefuse_plugins.runtime.backends.functions import (
    HOST_VARS,
    RESERVED_VARS,
    RUNTIME_DIR,
    FunctionConfig,
    FunctionNotFound,
    LocalLambdaError,
    RequestTooLarge,
    TooManyRequests,
    base_env,
    check_environment,
    with_config,
)
from wisefuse_plugins.runtime.backends.host import HostInfo, host_info
from wisefuse_plugins.runtime.backends.invocation import Invocation
from wisefuse_plugins.runtime.backends.worker import OOM_ERROR, read_frame, write_frame

Clock = Literal["auto", "cgroup", "cpu-clock"]
MemoryMode = Literal["auto", "cgroup", "rlimit", "none"]

WORKER_SCRIPT = str(Path(__file__).with_name("worker.py"))
#: Memory a worker may use on top of the function's memory_mb, for the interpreter. An
#: idle worker whose handler module imports numpy measures 31 MB resident here (Python
#: 3.11: 12 MB bare, +19 MB numpy and OpenBLAS), of which 19 MB are charged to its
#: cgroup (shared library pages already cached are charged elsewhere). 32 MB covers it,
#: so the handler's own data gets about memory_mb. Lambda counts its runtime (~35-40 MB
#: for Python) inside memory_mb, so the local limit is looser by about this much:
#: compare Invocation.max_memory_used_mb, which includes the interpreter, with memory_mb.
DEFAULT_MEMORY_ALLOWANCE_MB = 32
#: CFS bandwidth period bounds. A quota of q per period p lets a job run q then stall
#: p - q, so a job of a few periods finishes anywhere between C and C/s + p: short periods
#: make short invocations take C/s, as the model assumes. The quota cannot go below 1 ms
#: (kernel minimum), hence a longer period for the smallest shares (13.8 ms at 128 MB).
CFS_MIN_PERIOD_US = 10_000
CFS_MAX_PERIOD_US = 20_000
#: CFS weight (cpu.shares) of a worker's CPU cgroup; a plain process has 1024. When other
#: processes load the host, a worker at the default weight is time-sliced with them and
#: both clocks suffer: wall time waits for a core (cgroup) and CPU time itself grows by
#: up to 1.6x here, from cache and SMT interference (cpu-clock). At 16x the weight a
#: worker runs in long slices, as a Lambda environment has its share to itself; the
#: quota still caps it at its share in cgroup mode.
DEFAULT_CPU_WEIGHT = 16_384
LOG_TAIL_BYTES = 4096
ACCOUNT_ID = "000000000000"
#: Imported by the fork server before the ``preload`` modules: the runtime's Lambda handler.
RUNTIME_HANDLER_MODULE = "wisefuse_plugins.runtime.handler"
#: How long the fork server may take to import its preloads before the backend gives up
#: on preloading (airflow.sdk took 3-40 s here, depending on the load).
PRELOAD_TIMEOUT_S = 300.0
#: The spawning shell joins the worker's cgroups, then becomes it (without the PWD it sets).
_JOIN_CGROUPS = (
    'while [ "$1" != -- ]; do echo $$ > "$1" || exit 97; shift; done; shift; unset PWD; exec "$@"'
)
_instances = itertools.count(1)
log = logging.getLogger(__name__)

__all__ = [  # what callers import from here (the names moved to the modules above stay here)
    "HOST_VARS",
    "RESERVED_VARS",
    "RUNTIME_DIR",
    "FunctionConfig",
    "FunctionNotFound",
    "HostInfo",
    "Invocation",
    "LocalLambda",
    "LocalLambdaError",
    "RequestTooLarge",
    "TooManyRequests",
    "base_env",
    "check_environment",
    "host_info",
    "with_config",
]


class LocalLambda:
    """Lambda on this machine. Thread-safe; use as a context manager or call :meth:`close`.

    - ``clock``: "auto" gives a function the cgroup CPU quota when the host can (cgroup v1
      CPU controller writable and the share fits in the host's cores), else "cpu-clock".
    - ``memory``: "auto" uses the cgroup v1 memory controller when writable, else RLIMIT_AS.
    - ``concurrency_limit``: invocations running at once, and workers alive at once (idle
      workers of other functions are evicted to make room). Over the limit, an invocation
      waits for a free slot (``on_limit="wait"``) or raises :class:`TooManyRequests`
      (``on_limit="throttle"``, as Lambda does).
    - ``init_boost``: INIT runs unthrottled, as observed on Lambda (not documented by AWS).
    - ``cpu_weight``: cpu.shares of the workers' CPU cgroups (see DEFAULT_CPU_WEIGHT);
      None leaves the host's default.
    - ``preload``: modules (e.g. ``("airflow.sdk",)``) imported once by a fork server,
      started on the first cold start, that then forks every new worker instead of
      spawning an interpreter. INIT then excludes the preloads' import time (a real
      Lambda cold start would pay it): see :attr:`preload_ms` and docs/local-backend.md.
    - ``environment``: variables common to every function (and the fork server). A
      function's environment is exactly :func:`base_env`, this, its ``FunctionConfig.env``
      and the variables Lambda sets (``AWS_LAMBDA_FUNCTION_NAME``...): nothing else of the
      caller's environment, as a Lambda function sees only its configuration.
    """

    def __init__(
        self,
        *,
        clock: Clock = "auto",
        memory: MemoryMode = "auto",
        keep_alive_s: float = 600.0,
        concurrency_limit: int | None = None,
        on_limit: Literal["wait", "throttle"] = "wait",
        memory_allowance_mb: int = DEFAULT_MEMORY_ALLOWANCE_MB,
        init_boost: bool = True,
        cpu_weight: int | None = DEFAULT_CPU_WEIGHT,
        pricing: Pricing = DEFAULT_PRICING,
        python: str = sys.executable,
        sample_interval_s: float = 0.005,
        preload: Sequence[str] = (),
        environment: Mapping[str, str] | None = None,
    ) -> None:
        if clock not in ("auto", "cgroup", "cpu-clock"):
            raise ValueError(f"clock must be 'auto', 'cgroup' or 'cpu-clock', got {clock!r}")
        if memory not in ("auto", "cgroup", "rlimit", "none"):
            raise ValueError(f"memory must be 'auto', 'cgroup', 'rlimit' or 'none', got {memory!r}")
        if on_limit not in ("wait", "throttle"):
            raise ValueError(f"on_limit must be 'wait' or 'throttle', got {on_limit!r}")
        if isinstance(preload, str):
            raise ValueError(f"preload must be a sequence of module names, got {preload!r}")
        for name in preload:
            if not name or not all(part.isidentifier() for part in name.split(".")):
                raise ValueError(f"preload: not a module name: {name!r}")
        self.host = host_info()
        if clock == "cgroup" and self.host.cpu_cgroup is None:
            raise LocalLambdaError(
                f"clock='cgroup' needs a writable cgroup v1 CPU controller: {self.host.cpu_reason}",
                hint="use clock='auto' or 'cpu-clock'",
            )
        if memory == "cgroup" and self.host.memory_cgroup is None:
            raise LocalLambdaError(
                f"memory='cgroup' needs a writable cgroup v1 memory controller: {self.host.memory_reason}",
                hint="use memory='auto' or 'rlimit'",
            )
        self.clock = clock
        self.memory = memory
        self.keep_alive_s = keep_alive_s
        self.on_limit = on_limit
        self.memory_allowance_mb = memory_allowance_mb
        self.init_boost = init_boost
        self.cpu_weight = cpu_weight
        self.pricing = pricing
        self.python = python
        self.sample_interval_s = sample_interval_s
        self.preload = tuple(preload)
        #: Variables every function gets (its own ``FunctionConfig.env`` wins), as if
        #: configured on each: the only way anything of the caller's reaches a function.
        self.environment = check_environment(environment, "LocalLambda")
        #: Wall ms the (latest) fork server spent importing the runtime handler and the
        #: preloads, once: a cost INIT no longer shows (None before the first cold start).
        self.preload_ms: float | None = None
        self.preload_cpu_ms: float | None = None
        limit = concurrency_limit or max(4, 2 * self.host.cores)
        self._id = next(_instances)
        self._seq = itertools.count(1)
        self._functions: dict[str, Function] = {}
        self._generations = itertools.count(1)
        self._executor: ThreadPoolExecutor | None = None
        self._state = Pool(limit)
        for h in (self.host.cpu_cgroup, self.host.memory_cgroup):
            if h is not None:
                cgroups.sweep_stale(h)
        sweep_tmpdirs()
        self._finalizer = weakref.finalize(self, self._state.shutdown)
        threading.Thread(
            target=reap_idle, args=(self._state, keep_alive_s), name="wisefuse-reaper", daemon=True
        ).start()

    # --- configuration ---------------------------------------------------------------

    @property
    def concurrency_limit(self) -> int:
        return self._state.limit

    @property
    def forkserver_pid(self) -> int | None:
        """Pid of the running fork server (``preload``), else None."""
        fs = self._state.forkserver
        return fs.pid if fs is not None and fs.alive else None

    @property
    def preload_fallback(self) -> str | None:
        """Why this backend gave up preloading and spawns every worker, if it did."""
        return self._state.fs_disabled

    def register(self, config: FunctionConfig) -> None:
        """Create or update a function; an update retires its warm workers (new code, new size)."""
        share = config.vcpus
        if self.clock == "cpu-clock" or self.host.cpu_cgroup is None:
            clock = "cpu-clock"
        elif self.clock == "cgroup":
            clock = "cgroup"  # shares above the host's cores are capped at the host's cores
        else:
            clock = "cgroup" if share <= self.host.cores else "cpu-clock"
        if self.memory == "auto":
            memory = "cgroup" if self.host.memory_cgroup is not None else "rlimit"
        else:
            memory = self.memory
        fn = Function(config, next(self._generations), clock, memory)
        with self._state.cond:
            self._check_open()
            self._functions[config.name] = fn
            stale = self._state.take_idle(
                lambda w: w.fn.config.name == config.name and w.fn is not fn
            )
        for w in stale:
            destroy_worker(w)

    def function(self, name: str) -> FunctionConfig:
        return self._function(name).config

    def warm_workers(self, name: str | None = None) -> list[int]:
        """Pids of idle, warm workers (of ``name``, or of all functions)."""
        with self._state.cond:
            pools = [self._state.idle.get(name, [])] if name else list(self._state.idle.values())
            return [w.pid for pool in pools for w in pool]

    def worker_pids(self) -> list[int]:
        """Pids of all live workers, idle or busy."""
        with self._state.cond:
            return [w.pid for w in self._state.workers]

    # --- invoking --------------------------------------------------------------------

    def invoke(self, name: str, event: Any = None) -> Invocation:
        """Run ``name`` on ``event`` synchronously (RequestResponse) and return the outcome.

        Errors of the function (exceptions, timeout, out of memory, crash) come back in
        ``Invocation.error``; errors of the request (unknown function, event too large,
        throttled, backend closed) are raised.
        """
        return self._invoke(name, event, limits.MAX_SYNC_REQUEST_BYTES)

    def invoke_async(self, name: str, event: Any = None) -> Future[Invocation]:
        """Queue an invocation (Event type: 1 MB payload limit, checked now); a Future."""
        body = self._encode(name, event, limits.MAX_ASYNC_REQUEST_BYTES)
        with self._state.cond:
            self._check_open()
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self._state.limit, thread_name_prefix="wisefuse-invoke"
                )
            executor = self._executor
        return executor.submit(self._run, name, body)

    def close(self) -> None:
        """Kill every worker and remove every cgroup and temporary file; idempotent."""
        with self._state.cond:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        self._finalizer()

    def __enter__(self) -> LocalLambda:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals -------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state.closed:
            raise LocalLambdaError("this LocalLambda is closed")

    def _function(self, name: str) -> Function:
        try:
            return self._functions[name]
        except KeyError:
            raise FunctionNotFound(
                f"Function not found: {name}", hint="register() it first"
            ) from None

    def _encode(self, name: str, event: Any, limit: int) -> bytes:
        self._function(name)
        body = json.dumps({} if event is None else event).encode()
        if len(body) > limit:
            raise RequestTooLarge(
                f"Request must be smaller than {limit} bytes for the InvokeFunction operation "
                f"(got {len(body)} bytes)",
                hint="pass large data through the store, by reference",
            )
        return body

    def _invoke(self, name: str, event: Any, limit: int) -> Invocation:
        return self._run(name, self._encode(name, event, limit))

    def _acquire(self, fn: Function) -> Worker | None:
        """A warm worker of ``fn``, or None with a slot reserved to start one."""
        state = self._state
        doomed: list[Worker] = []
        try:
            with state.cond:
                while True:
                    self._check_open()
                    pool = state.idle.get(fn.config.name, [])
                    while pool:
                        w = pool.pop()  # most recently used first, as Lambda tends to
                        if w.fn is fn and w.reusable:
                            state.busy += 1
                            return w
                        state.workers.discard(w)
                        doomed.append(w)
                    if state.busy < state.limit:
                        # workers alive or starting = busy slots + idle workers (a worker
                        # being started is not in state.workers yet): make room, evict the LRU
                        idle = [w for p in state.idle.values() for w in p]
                        if state.busy + len(idle) >= state.limit:
                            lru = min(idle, key=lambda w: w.last_used)
                            doomed += state.take_idle(lambda w, lru=lru: w is lru)
                        state.busy += 1
                        return None
                    if self.on_limit == "throttle":
                        raise TooManyRequests(
                            f"Rate Exceeded: {state.limit} concurrent invocations already running",
                            hint="raise concurrency_limit or use on_limit='wait'",
                        )
                    state.cond.wait()
        finally:
            for w in doomed:
                destroy_worker(w)

    def _release(self, worker: Worker | None, healthy: bool) -> None:
        """Give the slot back; a healthy worker goes to the idle pool, any other is destroyed
        before its slot is freed (so the limit also bounds workers alive)."""
        state = self._state
        with state.cond:
            keep = (
                worker is not None
                and healthy
                and not state.closed
                and not worker.dead
                and self._functions.get(worker.fn.config.name) is worker.fn
                and not (isinstance(worker.proc, ForkedProcess) and worker.proc.orphaned)
            )
            if keep:
                assert worker is not None
                worker.last_used = time.monotonic()
                state.idle.setdefault(worker.fn.config.name, []).append(worker)
                state.busy -= 1
                state.cond.notify_all()
                return
        if worker is not None:
            destroy_worker(worker)
        with state.cond:
            if worker is not None:
                state.workers.discard(worker)
            state.busy -= 1
            state.cond.notify_all()

    def _spawn(self, fn: Function) -> tuple[Worker, float]:
        """Start a worker (forked from the fork server with ``preload``, else spawned), in
        its cgroups when the modes ask for them: (worker, perf_counter when it started)."""
        # an isolated function never forks from the server: its modules come from the host
        server = self._forkserver() if self.preload and not fn.config.isolated else None
        if server is not None:
            try:
                return self._start_worker(fn, server)
            except ForkServerError as exc:
                log.warning("fork server: %s; spawning the worker instead", exc)
                if not server.alive:  # the next cold start starts a new one
                    with self._state.fs_lock, self._state.cond:
                        if self._state.forkserver is server:
                            self._state.forkserver = None
                    server.close()
        return self._start_worker(fn, None)

    def _forkserver(self) -> ForkServer | None:
        """The fork server, started on the first call (the caller waits for its preloads);
        None if preloading was given up, or if the server died since the last cold start
        (this cold start spawns; the next one starts a new server)."""
        state = self._state
        with state.fs_lock:
            if state.fs_disabled is not None or state.closed:
                return None
            fs = state.forkserver
            if fs is not None:
                if fs.alive:
                    return fs
                log.warning(
                    "the fork server (pid %s) died: %s; spawning this worker, restarting the "
                    "server on the next cold start",
                    fs.pid,
                    fs.error,
                )
                with state.cond:
                    state.forkserver = None
                fs.close()
                return None
            fs = ForkServer()
            state.fs_starts += 1
            state.tmpdir.mkdir(exist_ok=True)
            try:
                with state.cond:
                    self._check_open()
                    state.forkserver = fs  # so that close() can kill it while it starts
                fs.start(
                    self.python,
                    [RUNTIME_HANDLER_MODULE, *self.preload],
                    env=self._base_env(),
                    log_path=state.tmpdir / f"forkserver-{state.fs_starts}.log",
                )
                fs.wait_ready(PRELOAD_TIMEOUT_S)
            except (ForkServerError, OSError, LocalLambdaError) as exc:
                fs.close()
                with state.cond:
                    if state.forkserver is fs:
                        state.forkserver = None
                if not state.closed:
                    state.fs_disabled = f"{type(exc).__name__}: {exc}"
                    log.warning("preload %s: %s; workers are spawned instead", self.preload, exc)
                return None
            self.preload_ms, self.preload_cpu_ms = fs.preload_ms, fs.preload_cpu_ms
            return fs

    def _start_worker(self, fn: Function, server: ForkServer | None) -> tuple[Worker, float]:
        cfg = fn.config
        tag = cgroups.group_name(self._id, next(self._seq))
        groups: dict[str, cgroups.Cgroup] = {}
        limit_bytes = (cfg.memory_mb + self.memory_allowance_mb) * 1024 * 1024
        fds: list[int] = []
        logf = None
        try:
            if fn.memory_mode == "cgroup":
                assert self.host.memory_cgroup is not None
                g = groups["memory"] = cgroups.Cgroup(self.host.memory_cgroup, tag)
                g.write("memory.limit_in_bytes", limit_bytes)
                with contextlib.suppress(OSError):  # no swap: over the limit kills, as on Lambda
                    g.write("memory.memsw.limit_in_bytes", limit_bytes)
                with contextlib.suppress(OSError):
                    g.write("memory.swappiness", 0)
            if self.host.cpu_cgroup is not None and (fn.clock == "cgroup" or self.cpu_weight):
                g = groups["cpu"] = cgroups.Cgroup(self.host.cpu_cgroup, tag)
                if self.cpu_weight:
                    with contextlib.suppress(OSError):  # a weight is a nicety, not a must
                        g.write("cpu.shares", self.cpu_weight)
                if fn.clock == "cgroup":
                    period, quota = cfs_bandwidth(cfg.vcpus)
                    g.write("cpu.cfs_period_us", period)
                    g.write("cpu.cfs_quota_us", -1 if self.init_boost else quota)
            req_r, req_w = os.pipe()
            resp_r, resp_w = os.pipe()
            life_r, life_w = os.pipe()
            fds = [req_r, req_w, resp_r, resp_w, life_r, life_w]
            self._state.tmpdir.mkdir(exist_ok=True)  # if a tmp cleaner removed it
            log_path = self._state.tmpdir / f"{tag}.log"
            logf = open(log_path, "wb")  # noqa: SIM115 - handed to the child, closed below
            wcfg = {
                "handler": cfg.handler,
                "code_dir": cfg.code_dir,
                "layer_dirs": list(cfg.layer_dirs),
                "isolated": cfg.isolated,
                "fds": [req_r, resp_w, life_r],
                "function_name": cfg.name,
                "memory_mb": cfg.memory_mb,
                "arn": f"arn:aws:lambda:{self.pricing.region}:{ACCOUNT_ID}:function:{cfg.name}",
                "rlimit_bytes": limit_bytes if fn.memory_mode == "rlimit" else None,
            }
            procs = [str(g.procs_file) for g in groups.values()]
            env = self._env(cfg)
            proc: subprocess.Popen[bytes] | ForkedProcess
            t_start = time.perf_counter()
            if server is not None:  # the child joins its cgroups itself, then serves
                proc = server.fork(
                    wcfg,
                    env=env,
                    cwd=cfg.code_dir,
                    procs=procs,
                    fds=(req_r, resp_w, life_r, logf.fileno()),
                )
            else:
                flags = ["-I", "-S", "-u"] if cfg.isolated else []  # no site-packages, no PYTHON*
                cmd = [self.python, *flags, WORKER_SCRIPT, json.dumps(wcfg)]
                if groups:
                    cmd = ["/bin/sh", "-c", _JOIN_CGROUPS, "wisefuse-worker", *procs, "--", *cmd]
                proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=logf,
                    pass_fds=(req_r, resp_w, life_r),
                    env=env,
                    cwd=cfg.code_dir or None,
                    start_new_session=True,
                )
        except BaseException:  # also a failed fork: a child it made anyway dies with its
            for fd in fds:  # lifeline's end-of-file and with its cgroups
                os.close(fd)
            for g in groups.values():
                g.remove()
            if logf is not None:
                with contextlib.suppress(OSError):
                    log_path.unlink()
            raise
        finally:
            if logf is not None:
                logf.close()
        for fd in (req_r, resp_w, life_r):
            os.close(fd)
        worker = Worker(fn, proc, req_w, resp_r, life_w, groups, log_path)
        with self._state.cond:
            if self._state.closed:
                worker_closed = True
            else:
                worker_closed = False
                self._state.workers.add(worker)
        if worker_closed:
            destroy_worker(worker)
            self._check_open()
        return worker, t_start

    def _base_env(self) -> dict[str, str]:
        """The environment common to all functions (the fork server's): see :func:`base_env`."""
        home = self._state.tmpdir / "tmp"
        home.mkdir(parents=True, exist_ok=True)  # again, if a tmp cleaner removed it
        return base_env(home, self.pricing.region, self.environment)

    def _env(self, cfg: FunctionConfig) -> dict[str, str]:
        """A function's whole environment: the base, Lambda's variables, its configuration."""
        env = with_config(self._base_env(), cfg.env)
        env.update(
            {
                "AWS_LAMBDA_FUNCTION_NAME": cfg.name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(cfg.memory_mb),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{cfg.name}",
                "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
                "LAMBDA_TASK_ROOT": cfg.code_dir or os.getcwd(),
                "_HANDLER": cfg.handler,
            }
        )
        return env

    def _await(
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

    def _run(self, name: str, body: bytes) -> Invocation:
        fn = self._function(name)
        worker = self._acquire(fn)
        healthy = False
        try:
            rid = str(uuid.uuid4())
            init_ms: float | None = None
            if worker is None:
                worker, t_spawn = self._spawn(fn)
                init_ms, error = self._init(fn, worker, rid, t_spawn)
                if error is not None:
                    return self._result(fn, worker, rid, error=error, init_ms=init_ms)
            inv, healthy = self._run_on(fn, worker, rid, body, init_ms)
            return inv
        finally:
            self._release(worker, healthy)

    def _init(
        self, fn: Function, worker: Worker, rid: str, t_spawn: float
    ) -> tuple[float, dict[str, Any] | None]:
        """Wait for a new worker to import the handler: (init ms, error or None)."""
        cfg = fn.config
        # INIT budget: Lambda's 10 s, then a retry within the invocation's own timeout
        waited = self._await(
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
            return init_ms, _timeout_error(rid, cfg.timeout_s)
        if frame is None:
            return init_ms, self._death_error(worker)
        if not ready:
            return init_ms, frame[0].get("error") or self._death_error(worker)
        if fn.clock == "cgroup" and self.init_boost:
            worker.groups["cpu"].write("cpu.cfs_quota_us", cfs_bandwidth(cfg.vcpus)[1])
        return init_ms, None

    def _run_on(
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
        log_start = 0 if init_ms is not None else _size(worker.log_path)
        waited = self._await(
            worker,
            cfg.timeout_s,
            share,
            sampled,
            request=({"request_id": rid, "timeout_s": cfg.timeout_s}, body),
        )
        logs = _tail(worker.log_path, log_start)
        if waited.frame is None:  # timed out, or the worker died
            eq, wall, wait, cpu = waited.measure(share)
            if waited.timed_out:
                peak = self._peak_from_cgroup(worker)
                destroy_worker(worker)
                error, duration_ms = _timeout_error(rid, cfg.timeout_s), cfg.timeout_s * 1000
            else:
                error, duration_ms = self._death_error(worker), eq * 1000
                oom = error["errorType"] == "Runtime.OutOfMemory"
                peak = cfg.memory_mb if oom else self._peak_from_cgroup(worker)
            inv = self._result(
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
            _equivalent_timings(payload, waited.clock)
        inv = self._result(
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

    def _result(
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

    def _peak_from_cgroup(self, worker: Worker) -> int:
        g = worker.groups.get("memory")
        return math.ceil(g.read_int("memory.max_usage_in_bytes") / 2**20) if g else 0

    def _death_error(self, worker: Worker) -> dict[str, Any]:
        """Why a worker died: the cgroup OOM killer, or an exit status / signal."""
        try:
            rc = worker.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            rc = None
        g = worker.groups.get("memory")
        if g is not None and g.read_keyed("memory.oom_control").get("oom_kill", 0) > 0:
            return dict(OOM_ERROR)
        if rc == 97 and worker.groups:
            raise LocalLambdaError(
                f"could not move a worker into its cgroups {list(worker.groups)}"
            )
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


def _equivalent_timings(payload: Any, clock: CpuClock) -> None:
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


def cfs_bandwidth(share: float) -> tuple[int, int]:
    """(cpu.cfs_period_us, cpu.cfs_quota_us) giving ``share`` CPUs in slices of >= 1 ms."""
    period = min(CFS_MAX_PERIOD_US, max(CFS_MIN_PERIOD_US, math.ceil(1000 / share)))
    return period, max(1000, round(share * period))


def _timeout_error(rid: str, timeout_s: float) -> dict[str, Any]:
    return {
        "errorType": "Sandbox.Timedout",
        "errorMessage": f"RequestId: {rid} Error: Task timed out after {timeout_s:.2f} seconds",
        "stackTrace": [],
    }


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _tail(path: Path, start: int) -> str:
    """What was written to the log since ``start``, at most the last 4 KB (as LogType=Tail)."""
    try:
        with open(path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            f.seek(max(start, end - LOG_TAIL_BYTES))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""
