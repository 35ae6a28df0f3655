"""The local Lambda service started on demand, once per root, found again from any process.

Lambda keeps an execution environment warm between invocations whoever the caller is.
Under a real Airflow executor each task instance is its own process, and a Prefect worker
starts one per flow run: an engine living inside the caller would make every unit cold.
So the hook and the block call :func:`ensure`, which returns the URL of the service that
owns the root (``$WISEFUSE_HOME/lambda-service``, one root per set of engine options),
starting it when none runs: a detached process (its own session, so it outlives the task
that started it) that stops itself after ``idle_s`` without requests. Starters serialise
on a file lock, so two task processes starting at once get one service.

The service process gets a clean environment (the variables of :data:`KEPT_VARS`), never the
caller's whole environment: a task process's Airflow settings are not the service's.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.runtime.store import wisefuse_home

LOCK_NAME = "service.pid"  # written by the service (server.py): {"pid", "url"}
LOG_NAME = "service.log"
#: A service started on demand stops after this long without a request (Lambda keeps an
#: idle environment for minutes, not forever); ``$WISEFUSE_LAMBDA_IDLE_S`` overrides it.
DEFAULT_IDLE_S = 900.0
ENV_IDLE = "WISEFUSE_LAMBDA_IDLE_S"
#: ``$WISEFUSE_LAMBDA_ENDPOINT``: use the service at this URL (started by hand with
#: ``wisefuse lambda serve``) instead of one started on demand.
ENV_ENDPOINT = "WISEFUSE_LAMBDA_ENDPOINT"
START_TIMEOUT_S = 60.0
#: What the service process keeps of its starter's environment.
KEPT_VARS = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ")
KEPT_PREFIXES = ("WISEFUSE_",)

_started: dict[Path, int] = {}  # roots this process started a service for -> pid


def service_root(options: Mapping[str, Any] | None = None) -> Path:
    """The root of the service with these engine options (``LocalLambda`` keyword arguments).

    Callers asking for the same options share one service, hence warm environments; other
    options get a service of their own, never one silently built with someone else's.
    """
    base = wisefuse_home() / "lambda-service"
    if not options:
        return base
    key = json.dumps(dict(options), sort_keys=True, default=str)
    return base.with_name(f"lambda-service-{hashlib.sha256(key.encode()).hexdigest()[:10]}")


def owner(root: Path) -> dict[str, Any] | None:
    """The live service owning ``root`` ({"pid", "url"}), or None."""
    try:
        info = json.loads((root / LOCK_NAME).read_text() or "{}")
        alive = _alive(int(info["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if alive and isinstance(info, dict) else None


def ping(url: str, timeout_s: float = 5.0) -> bool:
    """True when a Lambda API answers at ``url`` (ListFunctions)."""
    try:
        with urllib.request.urlopen(f"{url}/2015-03-31/functions", timeout=timeout_s) as r:
            return r.status == 200
    except (OSError, urllib.error.URLError, ValueError):
        return False


def find(root: Path) -> str | None:
    """The URL of the service owning ``root`` if it is up and answering, else None."""
    info = owner(root)
    url = info.get("url") if info else None
    return url if url and ping(url) else None


def ensure(
    options: Mapping[str, Any] | None = None,
    *,
    root: Path | None = None,
    idle_s: float | None = None,
    timeout_s: float = START_TIMEOUT_S,
) -> str:
    """The URL of the local Lambda service for ``options``, started if none is running.

    ``$WISEFUSE_LAMBDA_ENDPOINT`` wins when set: that service must answer (a clear error if
    not). Otherwise the service owning ``root`` (default :func:`service_root`) is used or
    started, detached, with an idle shutdown of ``idle_s`` (default ``$WISEFUSE_LAMBDA_IDLE_S``
    or :data:`DEFAULT_IDLE_S`).
    """
    endpoint = os.environ.get(ENV_ENDPOINT)
    if endpoint:
        url = endpoint.rstrip("/")
        if not ping(url):
            raise WiseFuseError(
                f"no Lambda service answers at ${ENV_ENDPOINT}={endpoint}",
                hint="start it with 'wisefuse lambda serve', or unset the variable to have "
                "one started on demand",
            )
        return url
    root = Path(root) if root is not None else service_root(options)
    root.mkdir(parents=True, exist_ok=True)
    url = find(root)
    if url:
        return url
    with _start_lock(root):
        url = find(root)  # another process started it while we waited for the lock
        if url:
            return url
        if idle_s is None:
            idle_s = float(os.environ.get(ENV_IDLE) or DEFAULT_IDLE_S)
        return _start(root, dict(options or {}), idle_s, timeout_s)


@contextlib.contextmanager
def _start_lock(root: Path) -> Iterator[None]:
    with open(root / ".start.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def service_env() -> dict[str, str]:
    """The service process's environment: :data:`KEPT_VARS`, ``WISEFUSE_*`` and the path
    the caller imported this package from (so ``python -m`` finds the same code)."""
    env = {k: v for k, v in os.environ.items() if k in KEPT_VARS or k.startswith(KEPT_PREFIXES)}
    package_parent = str(Path(__file__).resolve().parents[4])
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (package_parent, os.environ.get("PYTHONPATH")) if p
    )
    env["WISEFUSE_HOME"] = str(wisefuse_home())
    env.pop(ENV_ENDPOINT, None)
    return env


def _start(root: Path, options: dict[str, Any], idle_s: float, timeout_s: float) -> str:
    cmd = [
        sys.executable,
        "-m",
        "wisefuse_plugins.runtime.backends.service",
        "--port",
        "0",
        "--root",
        str(root),
        "--idle-timeout",
        str(idle_s),
    ]
    if options:
        cmd += ["--engine-options", json.dumps(options, sort_keys=True)]
    log_path = root / LOG_NAME
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=service_env(),
            cwd=root,
            start_new_session=True,  # not in the task's process group: it outlives the task
            close_fds=True,
        )
    _started[root] = proc.pid
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        url = find(root)
        if url:
            return url
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
    raise WiseFuseError(
        f"the local Lambda service did not start within {timeout_s:.0f} s "
        f"(exit code {proc.poll()}); its log {log_path} ends with:\n{_tail(log_path)}",
        hint="fix what the log says, or start one with 'wisefuse lambda serve' and set "
        f"${ENV_ENDPOINT}",
    )


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop(root: Path, timeout_s: float = 10.0) -> bool:
    """Stop the service owning ``root`` (SIGTERM, then SIGKILL); True if one was running."""
    info = owner(root)
    if info is None:
        return False
    pid = int(info["pid"])
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _started.pop(root, None)
    return True


def stop_started() -> int:
    """Stop every service this process started (tests; ``close_local()``); how many."""
    return sum(stop(root) for root in list(_started))


def running_roots() -> list[Path]:
    """The roots of the local Lambda services running: those of ``$WISEFUSE_HOME`` (however
    they were started) and every one started on demand on this machine (read from /proc)."""
    base = service_root()
    roots = [r for r in (base, *base.parent.glob(f"{base.name}-*")) if owner(r) is not None]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv]
        if "wisefuse_plugins.runtime.backends.service" in args and "--root" in args:
            at = args.index("--root") + 1
            if at < len(args) and _alive(int(entry)):
                roots.append(Path(args[at]))
    return sorted(set(roots))


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie does not; our own child is reaped here)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")
