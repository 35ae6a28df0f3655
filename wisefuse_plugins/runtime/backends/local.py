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

This module is the facade: functions, their configuration, and the request path (take a
warm worker or a slot for a new one, within the concurrency limit; give it back). The
ideas it uses have their own modules: :mod:`.functions` (a function's configuration and
environment, request errors), :mod:`.environments` (workers, their pool, keep-alive and
teardown), :mod:`.spawning` (starting a worker: cgroups, fork server, environment),
:mod:`.running` (one invocation on a worker: wait, measure, bill, why it died),
:mod:`.host` (what this machine can enforce), :mod:`.invocation` (the result and its
REPORT line), :mod:`.cgroups` and :mod:`.cpuclock` (CPU and memory).
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Literal

from wisefuse_plugins.plan import limits
from wisefuse_plugins.plan.pricing import DEFAULT as DEFAULT_PRICING
from wisefuse_plugins.plan.pricing import Pricing
from wisefuse_plugins.runtime.backends import cgroups
from wisefuse_plugins.runtime.backends.environments import (
    Function,
    Pool,
    Worker,
    destroy_worker,
    reap_idle,
    sweep_tmpdirs,
)
from wisefuse_plugins.runtime.backends.forkserver import ForkedProcess
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
from wisefuse_plugins.runtime.backends.running import Runner
from wisefuse_plugins.runtime.backends.spawning import (
    DEFAULT_CPU_WEIGHT,
    DEFAULT_MEMORY_ALLOWANCE_MB,
    Starter,
    check_open,
)

Clock = Literal["auto", "cgroup", "cpu-clock"]
MemoryMode = Literal["auto", "cgroup", "rlimit", "none"]

_instances = itertools.count(1)

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
        limit = concurrency_limit or max(4, 2 * self.host.cores)
        self._functions: dict[str, Function] = {}
        self._generations = itertools.count(1)
        self._executor: ThreadPoolExecutor | None = None
        self._state = Pool(limit)
        self._starter = Starter(
            host=self.host,
            state=self._state,
            python=python,
            region=pricing.region,
            environment=self.environment,
            preload=self.preload,
            memory_allowance_mb=memory_allowance_mb,
            cpu_weight=cpu_weight,
            init_boost=init_boost,
            backend_id=next(_instances),
        )
        self._runner = Runner(self.host, pricing, sample_interval_s, init_boost)
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
    def preload_ms(self) -> float | None:
        """Wall ms the (latest) fork server spent importing the runtime handler and the
        preloads, once: a cost INIT no longer shows (None before the first cold start)."""
        return self._starter.preload_ms

    @property
    def preload_cpu_ms(self) -> float | None:
        """CPU ms of the same imports (None before the first cold start)."""
        return self._starter.preload_cpu_ms

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
        check_open(self._state)

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

    def _run(self, name: str, body: bytes) -> Invocation:
        fn = self._function(name)
        worker = self._acquire(fn)
        healthy = False
        try:
            rid = str(uuid.uuid4())
            init_ms: float | None = None
            if worker is None:
                worker, t_spawn = self._starter.spawn(fn)
                init_ms, error = self._runner.init(fn, worker, rid, t_spawn)
                if error is not None:
                    return self._runner.result(fn, worker, rid, error=error, init_ms=init_ms)
            inv, healthy = self._runner.run_on(fn, worker, rid, body, init_ms)
            return inv
        finally:
            self._release(worker, healthy)
