"""A real Prefect 3 server on this machine, run as a user runs one, for tests: ``prefect
server start`` on 127.0.0.1 (a free port) with SQLite in a temporary ``PREFECT_HOME``, and
the processes users start beside it (``flow.serve()`` scripts, ``prefect worker start``,
``prefect work-pool create``), every one in an environment pointing at that server.

Used by the ``prefect_live`` fixture (tests/live_prefect/conftest.py). Every wait is
bounded; a process that dies or a wait that expires raises :class:`LivePrefectError` with
the tail of every process's log. The test process talks to the server over its REST API
only (urllib): it keeps its own Prefect settings (the session's temporary server).

API of :class:`PrefectLive`::

    live = PrefectLive(root)                 # root: an empty temporary folder
    live.start()                             # prefect server start; waits for /api/health
    live.cli("work-pool", "create", ...)     # a prefect CLI command to its end (output)
    live.run_python(script, cwd=...)         # a Python script to its end (output)
    live.spawn("serve", [python, script])    # a long-running process (stopped by stop())
    live.spawn("trace", [...], ends=True)    # one that ends by itself; live.finish("trace")
    live.wait_deployment("flow/deployment")  # its id, once the API has it
    run = live.create_run(deployment_id)     # a flow run of the deployment: its id
    live.wait_run(run)                       # the flow run, once final (JSON)
    live.task_runs(run, expected=n)          # its task runs, once n of them completed
    live.logs(run)                           # its log records (flow and task runs)
    live.result(flow_run)                    # its persisted result, deserialized
    live.request("GET", "/flow_runs/...")    # any REST call: the decoded JSON
    live.stop()                              # SIGTERM then SIGKILL each process group, by
                                             # pid; also any process whose environment
                                             # points into ``root`` (flow runs, unit workers)

Attributes: ``root``, ``home`` (PREFECT_HOME), ``api_url``, ``results`` (where flow runs
persist their results), ``wisefuse_home`` (WISEFUSE_HOME of every process), ``env``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..live_processes import free_port, poll, stray_pids

#: Variables of the caller the processes do not inherit (they get their own).
DROPPED_PREFIXES = ("PREFECT_", "WISEFUSE_", "AIRFLOW_", "AIRFLOW__", "AWS_")
FINAL_STATES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
LOG_TAIL_CHARS = 3000
REQUEST_TIMEOUT_S = 60
REQUEST_ATTEMPTS = 4


class LivePrefectError(RuntimeError):
    """The server or a process beside it could not do what was asked (with log tails)."""


def prefect_cli() -> str:
    """The ``prefect`` command of this interpreter's environment, or a clear error."""
    beside = Path(sys.executable).parent / "prefect"
    found = str(beside) if beside.exists() else shutil.which("prefect")
    if found is None:
        raise LivePrefectError(
            f"the prefect CLI is not installed (not beside {sys.executable}, not on PATH): "
            "these tests run `prefect server start` and `prefect worker start` as users do; "
            "install it with `pip install -e '.[prefect]'` (or `make test`)"
        )
    return found


def prefect_env(root: Path, port: int, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every process: the caller's minus Prefect, WiseFuse, Airflow and
    AWS settings, plus a server and a WiseFuse home confined to ``root``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(DROPPED_PREFIXES)}
    home = root / "prefect-home"
    env.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(port),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
            "PREFECT_UI_ENABLED": "false",
            # results are persisted where the test can read them
            "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
            "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(root / "results"),
            "PREFECT_SERVER_MEMO_STORE_PATH": str(home / "memo_store.toml"),
            # workers and served flows look for runs every second (default: 10 s)
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
            "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.5",
            "WISEFUSE_HOME": str(root / "wisefuse-home"),
            "WISEFUSE_EXAMPLE_SIZE": "small",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
    )
    env.update(extra or {})
    return env


class PrefectLive:
    """One real Prefect server under ``root`` (see the module's docstring for the API)."""

    def __init__(self, root: Path, *, extra_env: Mapping[str, str] | None = None) -> None:
        self.root = Path(root).resolve()
        self.port = free_port()
        self.env = prefect_env(self.root, self.port, extra_env)
        self.home = Path(self.env["PREFECT_HOME"])
        self.api_url = self.env["PREFECT_API_URL"]
        self.results = Path(self.env["PREFECT_RESULTS_LOCAL_STORAGE_PATH"])
        self.wisefuse_home = Path(self.env["WISEFUSE_HOME"])
        self.prefect = prefect_cli()
        self.python = sys.executable
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.commands: set[str] = set()  # processes that end by themselves (see finish)
        self.started_s: float | None = None
        self.t0 = time.monotonic()
        #: (what, seconds since this object was made) for each step done, in order
        self.timeline: list[tuple[str, float]] = []

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, timeout_s: float = 180.0) -> PrefectLive:
        """``prefect server start``; returns when its API answers /health."""
        t0 = time.monotonic()
        for d in (self.home, self.results, self.wisefuse_home):
            d.mkdir(parents=True, exist_ok=True)
        try:
            self.spawn(
                "server",
                [self.prefect, "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
            )
            self.wait(self._healthy, timeout_s, "the Prefect server's /api/health")
        except BaseException:
            self.stop()
            raise
        self.started_s = time.monotonic() - t0
        self.mark("server healthy")
        return self

    def mark(self, what: str) -> None:
        """Note in :attr:`timeline` that ``what`` is done (where a slow run spent its time)."""
        self.timeline.append((what, round(time.monotonic() - self.t0, 1)))

    def _healthy(self) -> bool:
        try:
            return self.request("GET", "/health", timeout_s=5) is True
        except (OSError, LivePrefectError):
            return False

    def spawn(
        self, name: str, args: Sequence[str], cwd: Path | None = None, *, ends: bool = False
    ) -> None:
        """Start a process (its own process group), logging to ``root/name.log``: a
        long-running one, which must stay up, or with ``ends`` one to :meth:`finish`."""
        if name in self.procs and self.procs[name].poll() is None:
            raise LivePrefectError(f"a process named {name!r} is already running")
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - the child's
        try:
            self.procs[name] = subprocess.Popen(
                list(args),
                env=self.env,
                cwd=cwd or self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        if ends:
            self.commands.add(name)

    def finish(self, name: str, timeout_s: float = 180.0) -> str:
        """Wait for a process started with ``ends=True`` to exit 0; its output."""
        proc = self.procs[name]
        log = self.root / f"{name}.log"
        self.wait(lambda: proc.poll() is not None, timeout_s, f"{name} to finish")
        output = log.read_text(errors="replace")
        self.mark(f"{name} finished")
        if proc.returncode != 0:
            raise LivePrefectError(
                f"{name} failed ({proc.returncode}):\n{output[-LOG_TAIL_CHARS:]}\n{self.log_tails()}"
            )
        return output

    def stop_process(self, name: str) -> None:
        """Stop one process started by :meth:`spawn` (its whole group), by pid."""
        proc = self.procs.get(name)
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop every process started here, by pid, whatever state it is in; the server last."""
        for name in [n for n in self.procs if n != "server"] + ["server"]:
            self.stop_process(name)
        for pid in self.stray_pids():  # detached ones: flow run processes, unit workers
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def stray_pids(self) -> list[int]:
        """Live processes (other than this one) whose environment mentions ``root``."""
        return stray_pids(self.root)

    # -- commands --------------------------------------------------------------------------

    def cli(self, *args: str, timeout_s: float = 120.0, cwd: Path | None = None) -> str:
        """Run ``prefect ARGS`` to its end; its output, or an error with it."""
        return self._run([self.prefect, *args], timeout_s, cwd, f"prefect {' '.join(args)}")

    def run_python(self, script: Path, *, timeout_s: float = 180.0, cwd: Path | None = None) -> str:
        """Run ``python SCRIPT`` to its end, as a user would; its output, or an error with it."""
        return self._run(
            [sys.executable, str(script)], timeout_s, cwd or script.parent, script.name
        )

    def _run(self, args: list[str], timeout_s: float, cwd: Path | None, what: str) -> str:
        try:
            done = subprocess.run(
                args,
                env=self.env,
                cwd=cwd or self.root,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            out = (
                (exc.stdout or b"").decode(errors="replace")
                if isinstance(exc.stdout, bytes)
                else ""
            )
            raise LivePrefectError(
                f"{what} took more than {timeout_s:.0f} s\n{out[-LOG_TAIL_CHARS:]}"
            ) from exc
        output = done.stdout + done.stderr
        self.mark(f"{what} finished")
        if done.returncode != 0:
            raise LivePrefectError(
                f"{what} failed ({done.returncode}):\n{output[-LOG_TAIL_CHARS:]}\n{self.log_tails()}"
            )
        return output

    # -- waiting ---------------------------------------------------------------------------

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if name not in self.commands and proc.poll() is not None:
                raise LivePrefectError(
                    f"{name} exited with status {proc.returncode}\n{self.log_tails()}"
                )

    def wait(
        self,
        done: Callable[[], Any],
        timeout_s: float,
        what: str,
        describe: Callable[[], str] | None = None,
        interval_s: float = 0.5,
    ) -> Any:
        """Poll ``done()`` until it is truthy (its value); every process must stay alive."""
        return poll(
            done,
            timeout_s,
            what,
            check_alive=self._check_alive,
            tails=self.log_tails,
            error=LivePrefectError,
            describe=describe,
            interval_s=interval_s,
        )

    def log_tails(self, chars: int = LOG_TAIL_CHARS) -> str:
        """The end of each process's log, for error messages."""
        parts = []
        for name in self.procs:
            path = self.root / f"{name}.log"
            text = path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"
            parts.append(f"--- {name} ({path}) ---\n{text}")
        return "\n".join(parts)

    # -- the REST API ------------------------------------------------------------------------

    def request(
        self, method: str, path: str, body: Any = None, *, timeout_s: float = REQUEST_TIMEOUT_S
    ) -> Any:
        """One REST call to the server (``path`` under /api): the decoded JSON. An answer
        5xx (SQLite's write lock under load) or no answer is retried a few times."""
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(REQUEST_ATTEMPTS):
            req = urllib.request.Request(
                self.api_url + path,
                data=data,
                method=method,
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                    text = resp.read().decode()
                return json.loads(text) if text else None
            except urllib.error.HTTPError as err:
                detail = err.read().decode(errors="replace")[:2000]
                if err.code < 500 or attempt == REQUEST_ATTEMPTS - 1:
                    raise LivePrefectError(
                        f"{method} {path} answered {err.code}: {detail}"
                    ) from None
            except OSError:
                if attempt == REQUEST_ATTEMPTS - 1:
                    raise
            time.sleep(1.0 + attempt)
        raise AssertionError("unreachable")

    def deployment(self, name: str) -> dict[str, Any] | None:
        """The deployment ``flow-name/deployment-name``, or None while the API has none."""
        try:
            return self.request("GET", f"/deployments/name/{name}")
        except LivePrefectError as err:
            if "answered 404" in str(err):
                return None
            raise

    def wait_deployment(self, name: str, timeout_s: float = 120.0) -> str:
        """The id of deployment ``flow-name/deployment-name``, once it exists."""
        found = self.wait(lambda: self.deployment(name), timeout_s, f"deployment {name!r}")
        self.mark(f"deployment {name} exists")
        return found["id"]

    def create_run(self, deployment_id: str, parameters: dict[str, Any] | None = None) -> str:
        """A new flow run of the deployment (scheduled now): its id."""
        body = {"parameters": parameters} if parameters is not None else {}
        return self.request("POST", f"/deployments/{deployment_id}/create_flow_run", body)["id"]

    def flow_run(self, run_id: str) -> dict[str, Any]:
        return self.request("GET", f"/flow_runs/{run_id}")

    def wait_run(self, run_id: str, timeout_s: float = 150.0) -> dict[str, Any]:
        """The flow run, once its state is final."""

        def final() -> dict[str, Any] | None:
            run = self.flow_run(run_id)
            return run if (run.get("state") or {}).get("type") in FINAL_STATES else None

        run = self.wait(
            final,
            timeout_s,
            f"flow run {run_id} to finish",
            describe=lambda: f"its state: {(self.flow_run(run_id).get('state') or {})}",
            interval_s=1.0,
        )
        self.mark(f"flow run {run_id} final")
        return run

    def task_runs(self, run_id: str, expected: int = 0, timeout_s: float = 30.0) -> list[dict]:
        """The flow run's task runs, once ``expected`` of them show completed (Prefect 3
        records task run states from events, a moment after the flow run ends)."""
        body = {"flow_runs": {"id": {"any_": [run_id]}}, "limit": 200}

        def read() -> list[dict[str, Any]]:
            return self.request("POST", "/task_runs/filter", body)

        def enough() -> list[dict[str, Any]] | None:
            runs = read()
            done = [r for r in runs if (r.get("state") or {}).get("type") == "COMPLETED"]
            return runs if len(done) >= expected else None

        try:
            return self.wait(enough, timeout_s, f"{expected} completed task runs of {run_id}")
        except LivePrefectError:
            return read()

    def logs(self, run_id: str, timeout_s: float = 30.0, until: str | None = None) -> list[dict]:
        """The flow run's log records, oldest first (with ``until``: once one contains it)."""
        body = {"logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_ASC", "limit": 200}

        def read() -> list[dict[str, Any]]:
            return self.request("POST", "/logs/filter", body)

        def has() -> list[dict[str, Any]] | None:
            records = read()
            return records if any(until in r["message"] for r in records) else None

        if until is None:
            return read()
        try:
            return self.wait(has, timeout_s, f"a log line of {run_id} with {until!r}")
        except LivePrefectError:
            return read()

    def result(self, flow_run: dict[str, Any]) -> Any:
        """The flow run's persisted result: read from ``results``, deserialized with the
        serializer its state names."""
        from prefect.serializers import Serializer

        data = (flow_run.get("state") or {}).get("data") or {}
        key = data.get("storage_key")
        if not key:
            raise LivePrefectError(f"flow run {flow_run['id']} has no persisted result: {data}")
        path = Path(key) if Path(key).is_absolute() else self.results / key
        serializer = Serializer(**(data.get("serializer") or {"type": "pickle"}))
        return serializer.loads(path.read_bytes())
