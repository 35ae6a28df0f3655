"""Fork server of the local Lambda backend: cold starts by ``fork()`` from a preloaded process.

``LocalLambda(preload=("airflow.sdk",))`` starts one fork-server process (lazily, on the
first cold start) that imports ``wisefuse_plugins.runtime.handler`` and the ``preload``
modules once. Each cold start then asks it for a worker: the server forks (copy-on-write,
a few ms of CPU), and the child becomes exactly what ``python worker.py CONFIG`` would
have been, except that the preloaded modules are already in ``sys.modules``:

1. new session (its own process group, as ``start_new_session``), stdin from /dev/null,
   stdout/stderr to the worker's log file, every other inherited fd closed;
2. joins its memory and CPU cgroups by writing its own pid to their ``cgroup.procs``
   (exit status 97 if it cannot, as the spawning shell does) *before any user code*;
3. ``chdir(code_dir)``, the function's environment, :func:`worker.serve`: ``code_dir``
   on ``sys.path``, the handler module imported (the measured INIT), RLIMIT_AS set after it
   in rlimit mode, the lifeline thread (dies with the parent), the request loop.

Channel: a ``SOCK_SEQPACKET`` Unix socket pair. The parent sends one JSON message per
fork with the worker's three pipe ends and its log file as ``SCM_RIGHTS`` fds
(:func:`socket.send_fds`); the server answers with the child's pid and a pidfd
(``os.pidfd_open``) for it, so the parent can signal the very process (no pid reuse) and
see it exit. The server is the child's OS parent, so it watches every child's pidfd in its
single-threaded ``poll`` loop; when one exits it reads the status without reaping
(``waitid(..., WNOWAIT)``), reports it, and reaps (``waitpid``) when the parent says it
is done with the worker (``reap``): like a ``Popen`` until ``wait()``, the pid cannot be
reused while the parent may still ``killpg`` it. When the socket reaches end-of-file
(the parent closed it, or died) the server SIGKILLs and reaps its children and exits.

The server must be single-threaded when it forks: after the preloads it checks
``threading.active_count()`` and the kernel's task count and refuses (the parent then
spawns workers, with a warning) if a preload started a thread. ``gc.freeze()`` after the
preloads keeps the children's garbage collector from writing to (and so copying) the
preloaded objects' pages.

This module imports only the standard library: it runs as a script (``python
forkserver.py CONFIG``), and the parent imports it for :class:`ForkServer`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

SCRIPT = str(Path(__file__).resolve())
WORKER_SCRIPT = str(Path(__file__).resolve().with_name("worker.py"))
#: Largest message on the socket (a fork request carries the function's environment).
MAX_MESSAGE = 128 * 1024
MAX_FDS = 8
#: How long a fork request may take before the parent gives up and spawns instead.
FORK_TIMEOUT_S = 30.0
#: The status reported for a worker whose fork server died before it did (unknowable).
UNKNOWN_STATUS = 255


class ForkServerError(Exception):
    """The fork server could not start, or could not fork a worker (the caller spawns one)."""


def _send(sock: socket.socket, msg: Mapping[str, Any], fds: Sequence[int] = ()) -> None:
    socket.send_fds(sock, [json.dumps(msg, separators=(",", ":")).encode()], list(fds))


# --- the server (runs as a script) ------------------------------------------------------


def _load_worker_module() -> Any:
    """worker.py under a private name (a user module called ``worker`` must stay importable)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_wisefuse_worker", WORKER_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _close_all_but(keep: set[int]) -> None:
    lo = 3
    for fd in [*sorted(f for f in keep if f >= 3), os.sysconf("SC_OPEN_MAX")]:
        if fd > lo:
            os.closerange(lo, fd)
        lo = fd + 1


def _child(worker: Any, msg: dict[str, Any], fds: list[int]) -> NoReturn:
    """The forked worker: set up as a spawned one would be, then serve. Never returns."""
    status = 1
    try:
        import gc

        gc.enable()
        os.setsid()
        req_r, resp_w, life_r, log_fd = fds
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        _close_all_but({req_r, resp_w, life_r})
        pid = str(os.getpid())
        for procs in msg["procs"]:  # before any user code, as the spawning shell does
            try:
                with open(procs, "w") as f:
                    f.write(pid)
            except OSError:
                os._exit(97)
        if msg.get("cwd"):
            os.chdir(msg["cwd"])
        os.environ.clear()
        os.environ.update(msg["env"])
        sys.argv[:] = [WORKER_SCRIPT]
        import importlib

        importlib.invalidate_caches()  # code_dir may have changed since the server started
        cfg = dict(msg["cfg"], fds=[req_r, resp_w, life_r])
        worker.serve(cfg)
        status = 0
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        with contextlib.suppress(BaseException):
            import traceback

            traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            import atexit

            atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):
                stream.flush()
        os._exit(status)


def _serve(sock: socket.socket, worker: Any) -> None:
    """The fork loop: fork requests from the parent, exits of children, until end-of-file."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    running: dict[int, tuple[int, int]] = {}  # pidfd -> (pid, request id): not exited yet
    exited: dict[int, tuple[int, int]] = {}  # request id -> (pid, pidfd): zombies to reap
    reap_early: set[int] = set()  # "reap" came before the exit (the parent gave up waiting)
    try:
        while True:
            for fd, _ in poller.poll():
                if fd != sock.fileno():  # a child exited: report, reap when told
                    pid, rid = running.pop(fd)
                    poller.unregister(fd)
                    try:
                        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
                        rc = info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
                    except ChildProcessError:
                        rc = UNKNOWN_STATUS
                    if rid in reap_early:
                        reap_early.discard(rid)
                        with contextlib.suppress(ChildProcessError):
                            os.waitpid(pid, 0)
                        os.close(fd)
                        continue
                    exited[rid] = (pid, fd)
                    _send(sock, {"op": "exit", "id": rid, "rc": rc})
                    continue
                data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, MAX_FDS)
                if not data:
                    return
                msg = json.loads(data)
                if msg["op"] == "reap":
                    pid, pidfd = exited.pop(msg["id"], (0, -1))
                    if pid:
                        with contextlib.suppress(ChildProcessError):
                            os.waitpid(pid, 0)
                        os.close(pidfd)
                    elif any(rid == msg["id"] for _, rid in running.values()):
                        reap_early.add(msg["id"])
                    continue
                # "fork"
                for stream in (sys.stdout, sys.stderr):
                    stream.flush()
                try:
                    pid = os.fork()
                except OSError as exc:
                    for f in fds:
                        os.close(f)
                    _send(sock, {"op": "fork_error", "id": msg["id"], "error": str(exc)})
                    continue
                if pid == 0:
                    _child(worker, msg, fds)
                for f in fds:
                    os.close(f)
                pidfd = os.pidfd_open(pid)
                running[pidfd] = (pid, msg["id"])
                poller.register(pidfd, select.POLLIN)
                _send(sock, {"op": "forked", "id": msg["id"], "pid": pid}, [pidfd])
    except OSError:
        pass  # the parent is gone (EPIPE, ECONNRESET)
    finally:  # the parent closed or died: no child outlives us, none stays a zombie
        for pidfd, (pid, _) in running.items():
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            with contextlib.suppress(OSError):  # its group: the pid is not reaped yet
                os.killpg(pid, signal.SIGKILL)
        for pid, _ in [*running.values(), *exited.values()]:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def main(argv: list[str]) -> None:
    import gc

    gc.disable()  # no freed holes in the pages the children will share (gc.freeze below)
    cfg = json.loads(argv[1])
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sock = socket.socket(fileno=cfg["fd"])
    worker = _load_worker_module()
    import importlib
    import traceback

    t0, c0 = time.perf_counter(), time.process_time()
    for name in cfg["preload"]:
        try:
            importlib.import_module(name)
        except BaseException as exc:
            _send(
                sock,
                {
                    "op": "error",
                    "error": f"cannot import {name!r}: {type(exc).__name__}: {exc}",
                    "trace": traceback.format_exc()[-4000:],
                },
            )
            return
    wall_ms = (time.perf_counter() - t0) * 1000
    cpu_ms = (time.process_time() - c0) * 1000
    threads = threading.active_count()
    try:
        tasks = len(os.listdir("/proc/self/task"))
    except OSError:
        tasks = 1
    if threads > 1 or tasks > 1:
        names = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
        _send(
            sock,
            {
                "op": "error",
                "error": f"the preloads started threads ({threads} Python threads {names}, "
                f"{tasks} kernel tasks): forking a multi-threaded process is unsafe",
            },
        )
        return
    gc.collect()
    gc.freeze()
    _send(
        sock, {"op": "ready", "preload_ms": wall_ms, "preload_cpu_ms": cpu_ms, "pid": os.getpid()}
    )
    _serve(sock, worker)


# --- the parent's side ----------------------------------------------------------------


class ForkServer:
    """The parent's handle on one fork-server process (thread-safe).

    :meth:`start` spawns it, :meth:`wait_ready` waits for the preloads, :meth:`fork` asks
    for a worker, :meth:`close` kills it (idempotent). A reader thread receives the
    server's answers and the exit statuses of its children.
    """

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.preload_ms: float | None = None
        self.preload_cpu_ms: float | None = None
        self.error: str | None = None  # why it stopped, once dead
        self._sock: socket.socket | None = None
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._replies: dict[int, tuple[dict[str, Any], list[int]]] = {}
        self._abandoned: set[int] = set()
        self._exits: dict[int, int] = {}
        self._ready: dict[str, Any] | None = None
        self._dead = False
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return not self._dead and self.proc is not None

    def start(
        self,
        python: str,
        preload: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
    ) -> None:
        if self._dead:
            raise ForkServerError("closed before it started")
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            cfg = {"fd": child.fileno(), "preload": list(preload)}
            with open(log_path, "wb") as log:
                self.proc = subprocess.Popen(
                    [python, SCRIPT, json.dumps(cfg)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    pass_fds=(child.fileno(),),
                    env=dict(env),
                    start_new_session=True,
                )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        self._sock = parent
        self._log_path = log_path
        self._reader = threading.Thread(target=self._read, name="wisefuse-forkserver", daemon=True)
        self._reader.start()

    def wait_ready(self, timeout_s: float) -> None:
        """Wait for the preloads; raises :class:`ForkServerError` (and closes) on failure."""
        with self._cond:
            self._cond.wait_for(lambda: self._ready is not None or self._dead, timeout_s)
            ready, dead, error = self._ready, self._dead, self.error
        if ready is not None and ready.get("op") == "ready":
            self.preload_ms = float(ready["preload_ms"])
            self.preload_cpu_ms = float(ready["preload_cpu_ms"])
            return
        if ready is not None:
            reason = ready.get("error") or "failed"
            if ready.get("trace"):
                reason += "\n" + ready["trace"]
        elif dead:
            reason = f"exited before it was ready ({error}){self._log_tail()}"
        else:
            reason = f"not ready after {timeout_s:.0f} s"
        self.close()
        raise ForkServerError(reason)

    def fork(
        self,
        cfg: Mapping[str, Any],
        *,
        env: Mapping[str, str],
        cwd: str | None,
        procs: Sequence[str],
        fds: Sequence[int],
    ) -> ForkedProcess:
        """A new worker forked from the server, given the worker's pipe ends and log fd
        (``req_r, resp_w, life_r, log``; the caller keeps and closes its own copies)."""
        with self._cond:
            if self._dead or self._sock is None:
                raise ForkServerError(f"the fork server is gone ({self.error})")
            rid = next(self._ids)
        body = json.dumps(
            {
                "op": "fork",
                "id": rid,
                "cfg": dict(cfg),
                "env": dict(env),
                "cwd": cwd,
                "procs": list(procs),
            },
            separators=(",", ":"),
        ).encode()
        if len(body) > MAX_MESSAGE:
            raise ForkServerError(f"fork request too large ({len(body)} bytes: environment?)")
        try:
            with self._send_lock:
                socket.send_fds(self._sock, [body], list(fds))
        except OSError as exc:
            raise ForkServerError(f"cannot reach the fork server: {exc}") from None
        with self._cond:
            self._cond.wait_for(lambda: rid in self._replies or self._dead, FORK_TIMEOUT_S)
            if rid not in self._replies:
                self._abandoned.add(rid)
                why = (
                    f"it died ({self.error})" if self._dead else f"no answer in {FORK_TIMEOUT_S} s"
                )
                raise ForkServerError(f"the fork server did not fork: {why}")
            msg, got = self._replies.pop(rid)
        if msg["op"] != "forked" or len(got) != 1:
            for fd in got:
                os.close(fd)
            raise ForkServerError(f"fork failed: {msg.get('error', msg)}")
        return ForkedProcess(self, rid, int(msg["pid"]), got[0])

    def close(self) -> None:
        """Kill the server (its children, if any are left, die with it) and reap it."""
        with self._cond:
            self._dead = True
            self.error = self.error or "closed"
            sock, self._sock = self._sock, None
            self._cond.notify_all()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the reader and the server
        if self.proc is not None:
            # end-of-file makes it kill and reap its children; SIGKILL after a grace period
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=5)
        if sock is not None:
            sock.close()

    # --- internals ---

    def _send_reap(self, rid: int) -> None:
        with self._cond:
            sock = None if self._dead else self._sock
        if sock is not None:
            with contextlib.suppress(OSError), self._send_lock:
                _send(sock, {"op": "reap", "id": rid})

    def _read(self) -> None:
        sock = self._sock
        assert sock is not None and self.proc is not None
        try:
            while True:
                data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, MAX_FDS)
                if not data:
                    break
                msg = json.loads(data)
                op = msg.get("op")
                with self._cond:
                    if op in ("ready", "error"):
                        self._ready = msg
                    elif op in ("forked", "fork_error"):
                        if msg["id"] in self._abandoned:  # the requester gave up
                            self._abandoned.discard(msg["id"])
                            for fd in fds:
                                with contextlib.suppress(OSError):
                                    signal.pidfd_send_signal(fd, signal.SIGKILL)
                                os.close(fd)
                            continue
                        self._replies[msg["id"]] = (msg, fds)
                    elif op == "exit":
                        self._exits[msg["id"]] = int(msg["rc"])
                    self._cond.notify_all()
        except (OSError, ValueError):
            pass
        rc = self.proc.poll()
        if rc is None and not self._dead:
            with contextlib.suppress(subprocess.TimeoutExpired):
                rc = self.proc.wait(timeout=1)
        with self._cond:
            if not self._dead:
                self.error = f"fork server exited with status {rc}"
            self._dead = True
            self._cond.notify_all()

    def _log_tail(self) -> str:
        try:
            with open(self._log_path, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 2000))
                tail = f.read().decode("utf-8", "replace").strip()
        except (OSError, AttributeError):
            return ""
        return f": {tail}" if tail else ""


class ForkedProcess:
    """A forked worker, with the parts of ``subprocess.Popen`` the backend uses.

    The server is its OS parent; this handle holds a pidfd (to signal and watch the very
    process) and gets the exit status from the server. :meth:`close` lets the server reap.
    """

    def __init__(self, server: ForkServer, rid: int, pid: int, pidfd: int) -> None:
        self.server = server
        self.rid = rid
        self.pid = pid
        self.pidfd = pidfd
        self.returncode: int | None = None
        self._killed = False
        self._closed = False

    @property
    def orphaned(self) -> bool:
        """Its fork server died: its status will be unknown; do not reuse it."""
        return self.server._dead and not self._closed

    def poll(self) -> int | None:
        return self._wait(0.0)

    def wait(self, timeout: float | None = None) -> int:
        rc = self._wait(timeout)
        if rc is None:
            raise subprocess.TimeoutExpired(f"forked worker {self.pid}", timeout or 0.0)
        return rc

    def kill(self) -> None:
        if self._closed:
            return
        self._killed = True
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)

    def close(self) -> None:
        """Done with it (after it exited): the server reaps it; the pidfd is closed."""
        if self._closed:
            return
        self._closed = True
        self.server._send_reap(self.rid)
        with contextlib.suppress(OSError):
            os.close(self.pidfd)

    def _wait(self, timeout: float | None) -> int | None:
        if self.returncode is not None:
            return self.returncode
        srv = self.server
        deadline = None if timeout is None else time.monotonic() + timeout
        with srv._cond:
            srv._cond.wait_for(lambda: self.rid in srv._exits or srv._dead, timeout)
            if self.rid in srv._exits:
                self.returncode = srv._exits.pop(self.rid)
                return self.returncode
        if not srv._dead or self._closed:
            return None
        # the server died: the pidfd still says whether the process exited (status unknown)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        poller = select.poll()
        poller.register(self.pidfd, select.POLLIN)
        if poller.poll(-1 if left is None else int(left * 1000)):
            self.returncode = -signal.SIGKILL if self._killed else UNKNOWN_STATUS
        return self.returncode


if __name__ == "__main__":
    main(sys.argv)
