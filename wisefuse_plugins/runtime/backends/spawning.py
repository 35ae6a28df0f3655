"""Starting an execution environment: a worker process, spawned or forked from the fork
server, in its cgroups, with exactly the function's environment.

A :class:`Starter` belongs to one :class:`~wisefuse_plugins.runtime.backends.local.LocalLambda`:
it makes the worker's memory cgroup (its limit: the function's memory plus
:data:`DEFAULT_MEMORY_ALLOWANCE_MB`, or RLIMIT_AS) and CPU cgroup (Lambda's share as a CFS
quota, :func:`cfs_bandwidth`, and a weight), its pipes and log, and then either forks it
from the fork server that imported the ``preload`` modules once (:mod:`.forkserver`) or
spawns an interpreter running :mod:`.worker`. Waiting for it to be ready and running an
invocation on it is :mod:`.running`'s.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from wisefuse_plugins.runtime.backends import cgroups
from wisefuse_plugins.runtime.backends.environments import Function, Pool, Worker, destroy_worker
from wisefuse_plugins.runtime.backends.forkserver import ForkedProcess, ForkServer, ForkServerError
from wisefuse_plugins.runtime.backends.functions import (
    FunctionConfig,
    LocalLambdaError,
    base_env,
    with_config,
)
from wisefuse_plugins.runtime.backends.host import HostInfo

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
log = logging.getLogger("wisefuse_plugins.runtime.backends.local")  # the backend's messages


def check_open(state: Pool) -> None:
    """Raise :class:`LocalLambdaError` once the backend owning ``state`` is closed."""
    if state.closed:
        raise LocalLambdaError("this LocalLambda is closed")


def cfs_bandwidth(share: float) -> tuple[int, int]:
    """(cpu.cfs_period_us, cpu.cfs_quota_us) giving ``share`` CPUs in slices of >= 1 ms."""
    period = min(CFS_MAX_PERIOD_US, max(CFS_MIN_PERIOD_US, math.ceil(1000 / share)))
    return period, max(1000, round(share * period))


@dataclass
class Starter:
    """Starts the workers of one backend, with its settings (see ``LocalLambda``'s)."""

    host: HostInfo
    state: Pool
    python: str
    region: str
    environment: dict[str, str]
    preload: tuple[str, ...]
    memory_allowance_mb: int
    cpu_weight: int | None
    init_boost: bool
    backend_id: int
    #: Wall ms the (latest) fork server spent importing the runtime handler and the
    #: preloads, once: a cost INIT no longer shows (None before the first cold start).
    preload_ms: float | None = None
    preload_cpu_ms: float | None = None
    seq: itertools.count = field(default_factory=lambda: itertools.count(1))

    def spawn(self, fn: Function) -> tuple[Worker, float]:
        """Start a worker (forked from the fork server with ``preload``, else spawned), in
        its cgroups when the modes ask for them: (worker, perf_counter when it started)."""
        # an isolated function never forks from the server: its modules come from the host
        server = self.forkserver() if self.preload and not fn.config.isolated else None
        if server is not None:
            try:
                return self.start(fn, server)
            except ForkServerError as exc:
                log.warning("fork server: %s; spawning the worker instead", exc)
                if not server.alive:  # the next cold start starts a new one
                    with self.state.fs_lock, self.state.cond:
                        if self.state.forkserver is server:
                            self.state.forkserver = None
                    server.close()
        return self.start(fn, None)

    def forkserver(self) -> ForkServer | None:
        """The fork server, started on the first call (the caller waits for its preloads);
        None if preloading was given up, or if the server died since the last cold start
        (this cold start spawns; the next one starts a new server)."""
        state = self.state
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
                    check_open(self.state)
                    state.forkserver = fs  # so that close() can kill it while it starts
                fs.start(
                    self.python,
                    [RUNTIME_HANDLER_MODULE, *self.preload],
                    env=self.base_env(),
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

    def start(self, fn: Function, server: ForkServer | None) -> tuple[Worker, float]:
        cfg = fn.config
        tag = cgroups.group_name(self.backend_id, next(self.seq))
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
            self.state.tmpdir.mkdir(exist_ok=True)  # if a tmp cleaner removed it
            log_path = self.state.tmpdir / f"{tag}.log"
            logf = open(log_path, "wb")  # noqa: SIM115 - handed to the child, closed below
            wcfg = {
                "handler": cfg.handler,
                "code_dir": cfg.code_dir,
                "layer_dirs": list(cfg.layer_dirs),
                "isolated": cfg.isolated,
                "fds": [req_r, resp_w, life_r],
                "function_name": cfg.name,
                "memory_mb": cfg.memory_mb,
                "arn": f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{cfg.name}",
                "rlimit_bytes": limit_bytes if fn.memory_mode == "rlimit" else None,
            }
            procs = [str(g.procs_file) for g in groups.values()]
            env = self.env(cfg)
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
        with self.state.cond:
            if self.state.closed:
                worker_closed = True
            else:
                worker_closed = False
                self.state.workers.add(worker)
        if worker_closed:
            destroy_worker(worker)
            check_open(self.state)
        return worker, t_start

    def base_env(self) -> dict[str, str]:
        """The environment common to all functions (the fork server's): see :func:`base_env`."""
        home = self.state.tmpdir / "tmp"
        home.mkdir(parents=True, exist_ok=True)  # again, if a tmp cleaner removed it
        return base_env(home, self.region, self.environment)

    def env(self, cfg: FunctionConfig) -> dict[str, str]:
        """A function's whole environment: the base, Lambda's variables, its configuration."""
        env = with_config(self.base_env(), cfg.env)
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
