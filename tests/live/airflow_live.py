"""A real Airflow 3 deployment on this machine, as a platform engineer runs one, for tests
and benchmarks: ``airflow db migrate``, then ``airflow api-server``, ``airflow scheduler
--skip-serve-logs`` and ``airflow dag-processor`` with the LocalExecutor and SQLite, in a
temporary ``AIRFLOW_HOME`` on 127.0.0.1, with a dags folder outside the repository.

Used by the ``airflow_live`` fixture (tests/live/conftest.py) and by
benchmarks/airflow_scheduler.py: the process management lives here only.

API of :class:`AirflowLive` (every wait is bounded; a process that dies or a wait that
expires raises :class:`LiveAirflowError` with the tail of every process's log)::

    live = AirflowLive(root)               # root: an empty temporary folder
    live.start()                           # migrate, start the three processes, wait healthy
    live.put("my_dag.py", text)            # write a file into the dags folder (sub-paths ok)
    live.put_file(path, "sub/name.py")     # copy a file (a DAG, a plan, an IR) into it
    live.wait_parsed("dag_a", "dag_b", files=[path])   # parsed and not stale; an import error
                                           # of one of ``files`` fails at once, with its trace
    live.import_errors()                   # {file path: stack trace} as the UI shows them
    run = live.trigger("dag_a")            # REST API (token from the auth manager): run id
    live.wait_runs([("dag_a", run)])       # {(dag_id, run_id): final state}; times out clearly
    live.run_state("dag_a", run)           # "queued" | "running" | "success" | "failed" | None
    live.task_instances("dag_a", run)      # {(task_id, map_index): TaskInstance row}
    live.xcom("dag_a", run, "task")        # the XCom value (JSON-decoded), map_index=-1
    live.xcoms("dag_a", run)               # {(task_id, map_index, key): value}
    live.task_log("dag_a", run, "task", map_index=-1, try_number=None)  # the log's text
    live.processor_log(path)               # what the dag-processor logged parsing that file
    live.task_log_path(...)                # AIRFLOW_HOME/logs/dag_id=../run_id=../task_id=..
                                           # [/map_index=N]/attempt=K.log (JSON lines)
    live.query("SELECT ...", params)       # rows of the metadata DB (sqlite3.Row)
    live.request("GET", "/api/v2/pools")   # any REST call, authenticated: the decoded JSON
    live.stop()                            # SIGTERM then SIGKILL each process group, by pid;
                                           # also any process whose environment points into
                                           # ``root`` (task processes, unit workers)

Attributes: ``root``, ``home`` (AIRFLOW_HOME), ``dags`` (the dags folder), ``logs``,
``wisefuse_home`` (WISEFUSE_HOME of every Airflow process: the local backend's store,
``wisefuse_home/store``, is shared by all task processes), ``base_url``, ``env`` (the
Airflow processes' environment). Sharing one deployment: give every DAG a dag_id of its
own (e.g. prefixed by the test module) and put files under a sub-folder of your own.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..live_processes import free_port, poll, stray_pids

#: Variables of the caller the Airflow processes do not inherit (they get their own).
#: the module (in AIRFLOW_HOME/config) holding the metadata DB's connect arguments
DB_SETTINGS = "wisefuse_live_db"
SQLITE_LOCK_TIMEOUT_S = 60
#: a REST call may wait that long for SQLite's lock, and then some
REQUEST_TIMEOUT_S = 2 * SQLITE_LOCK_TIMEOUT_S
#: tries of a trigger that failed on SQLite's write lock (see :meth:`AirflowLive.trigger`)
TRIGGER_ATTEMPTS = 5
DROPPED_PREFIXES = ("AIRFLOW_", "AIRFLOW__", "WISEFUSE_", "PREFECT_", "AWS_")
PROCESSES = {
    "api-server": ["api-server"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
}
FINISHED = ("success", "failed")
LOG_TAIL_CHARS = 3000


class LiveAirflowError(RuntimeError):
    """The deployment could not do what was asked (with the processes' log tails)."""


@dataclass(frozen=True)
class TaskInstance:
    task_id: str
    map_index: int
    state: str | None
    try_number: int
    start_date: str | None
    end_date: str | None
    duration_s: float | None  # end - start, as Airflow records it


def airflow_env(
    root: Path, port: int, *, parallelism: int = 8, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of the Airflow processes: the caller's minus Airflow, WiseFuse,
    Prefect and AWS settings, plus a deployment confined to ``root``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(DROPPED_PREFIXES)}
    home = root / "airflow-home"
    base = f"http://127.0.0.1:{port}"
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "1",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            # SQLite takes one writer at a time and sqlite3 waits 5 s for the lock: with
            # dozens of runs at once on a loaded host the scheduler died on "database is
            # locked". Wait up to a minute instead (the dict is written by start(), into
            # AIRFLOW_HOME/config, which Airflow puts on sys.path before opening the DB)
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": f"{DB_SETTINGS}.CONNECT_ARGS",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": base,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            # new files are listed every 2 s (and parsed first); a changed file is parsed
            # again on the next loop (file_parsing_sort_mode=modified_time); unchanged ones
            # every minute (Airflow's default is 30 s): parsing must not eat the 2 cores, yet
            # a parse killed for taking too long (dag_file_processor_timeout) is retried
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "60",
            "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "0",
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(root / "bundles"),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "30",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            # the local backend's home: its store is shared by every task process
            "WISEFUSE_HOME": str(root / "wisefuse-home"),
            "WISEFUSE_EXAMPLE_SIZE": "small",
            # one BLAS thread, as in the local Lambda's workers: the same sums in the same
            # order in plain tasks and in units
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
    )
    env.update(extra or {})
    return env


class AirflowLive:
    """One real Airflow deployment under ``root`` (see the module's docstring for the API)."""

    def __init__(
        self,
        root: Path,
        *,
        parallelism: int = 8,
        extra_env: Mapping[str, str] | None = None,
        airflow: Iterable[str] = (sys.executable, "-m", "airflow"),
    ) -> None:
        self.root = Path(root).resolve()
        self.port = free_port()
        self.env = airflow_env(self.root, self.port, parallelism=parallelism, extra=extra_env)
        self.home = Path(self.env["AIRFLOW_HOME"])
        self.dags = Path(self.env["AIRFLOW__CORE__DAGS_FOLDER"])
        self.logs = self.home / "logs"
        self.wisefuse_home = Path(self.env["WISEFUSE_HOME"])
        self.base_url = self.env["AIRFLOW__API__BASE_URL"]
        self.db_path = self.home / "airflow.db"
        self.airflow = list(airflow)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._token: str | None = None
        self.started_s: float | None = None  # how long start() took

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, timeout_s: float = 300.0) -> AirflowLive:
        """Migrate the database and start the processes; returns when all are healthy."""
        t0 = time.monotonic()
        for d in (self.home, self.dags, self.wisefuse_home, self.home / "config"):
            d.mkdir(parents=True, exist_ok=True)
        (self.home / "config" / f"{DB_SETTINGS}.py").write_text(
            f"CONNECT_ARGS = {{'timeout': {SQLITE_LOCK_TIMEOUT_S}}}\n"
        )
        try:
            migrate = subprocess.run(
                [*self.airflow, "db", "migrate"],
                env=self.env,
                cwd=self.root,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise LiveAirflowError(f"airflow db migrate took more than {timeout_s:.0f} s") from exc
        if migrate.returncode != 0:
            raise LiveAirflowError(
                f"airflow db migrate failed ({migrate.returncode}):\n"
                f"{(migrate.stdout + migrate.stderr)[-LOG_TAIL_CHARS:]}"
            )
        # write-ahead logging (kept in the file): readers no longer block the one writer,
        # so the scheduler, the API and the dag-processor wait far less for the lock
        with contextlib.closing(sqlite3.connect(self.home / "airflow.db")) as db:
            db.execute("PRAGMA journal_mode=WAL")
        try:
            for name, args in PROCESSES.items():
                log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - the child's
                try:
                    self.procs[name] = subprocess.Popen(
                        [*self.airflow, *args],
                        env=self.env,
                        cwd=self.root,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # its own process group: stopped as one
                    )
                finally:
                    log.close()
            remaining = max(30.0, timeout_s - (time.monotonic() - t0))
            self._wait(self._healthy, remaining, "the api-server, scheduler and dag-processor")
        except BaseException:
            self.stop()
            raise
        self.started_s = time.monotonic() - t0
        return self

    def _healthy(self) -> bool:
        try:
            health = self.request("GET", "/api/v2/monitor/health", auth=False)
        except (OSError, LiveAirflowError):
            return False
        return all(
            (health.get(part) or {}).get("status") == "healthy"
            for part in ("metadatabase", "scheduler", "dag_processor")
        )

    def stop(self) -> None:
        """Stop every process of the deployment, by pid, whatever state it is in."""
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # what is left of the group
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        from wisefuse_plugins.runtime.backends.service import ondemand

        for root in ondemand.running_roots():  # started on demand by task processes
            if str(root).startswith(str(self.root)):
                ondemand.stop(root)
        for pid in self.stray_pids():  # detached ones: unit workers, fork servers
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def stray_pids(self) -> list[int]:
        """Live processes (other than this one) whose environment mentions ``root``."""
        return stray_pids(self.root)

    def __enter__(self) -> AirflowLive:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- waiting ---------------------------------------------------------------------------

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise LiveAirflowError(
                    f"airflow {name} exited with status {proc.returncode}\n{self.log_tails()}"
                )

    def _wait(
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
            error=LiveAirflowError,
            describe=describe,
            interval_s=interval_s,
        )

    def log_tails(self, chars: int = LOG_TAIL_CHARS) -> str:
        """The end of each process's log, for error messages."""
        parts = []
        for name in PROCESSES:
            path = self.root / f"{name}.log"
            text = path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"
            parts.append(f"--- airflow {name} ({path}) ---\n{text}")
        return "\n".join(parts)

    # -- files -----------------------------------------------------------------------------

    def put(self, name: str | Path, text: str) -> Path:
        """Write ``text`` as ``dags/name`` (written aside, then renamed: never half-parsed)."""
        path = self.dags / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        return path

    def repo_free(self, path: str | Path) -> bool:
        """True when ``path`` is outside every git work tree (the dags folder must be)."""
        return not any((parent / ".git").exists() for parent in Path(path).resolve().parents)

    def put_file(self, source: str | Path, name: str | Path | None = None) -> Path:
        """Copy ``source`` into the dags folder (as ``name``, default its own name)."""
        source = Path(source)
        path = self.dags / (name or source.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}.tmp")
        shutil.copyfile(source, tmp)
        os.replace(tmp, path)
        return path

    # -- the metadata database ---------------------------------------------------------------

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        """Rows of the metadata database (read-only; retried while a writer holds it)."""
        for attempt in range(20):
            try:
                con = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
            except sqlite3.OperationalError:
                if attempt == 19:
                    raise
                time.sleep(0.2)
                continue
            try:
                con.row_factory = sqlite3.Row
                return con.execute(sql, tuple(params)).fetchall()
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or attempt == 19:
                    raise
                time.sleep(0.2)
            finally:
                con.close()
        raise AssertionError("unreachable")

    def import_errors(self) -> dict[str, str]:
        """{file path: stack trace} of every file that failed to import (the UI's list)."""
        return {
            str(self.dags / r["filename"]): r["stacktrace"] or ""
            for r in self.query("SELECT filename, stacktrace FROM import_error")
        }

    def parsed(self, dag_ids: Iterable[str], since: float | None = None) -> set[str]:
        """Which of ``dag_ids`` are parsed, serialized and not stale (after ``since``,
        a UNIX time, if given)."""
        ids = list(dag_ids)
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        rows = self.query(
            f"SELECT d.dag_id, d.last_parsed_time FROM dag d JOIN serialized_dag s "
            f"ON s.dag_id = d.dag_id WHERE d.is_stale = 0 AND d.dag_id IN ({marks})",
            ids,
        )
        out = set()
        for r in rows:
            if since is None or (r["last_parsed_time"] and _unix(r["last_parsed_time"]) > since):
                out.add(r["dag_id"])
        return out

    def wait_parsed(
        self,
        *dag_ids: str,
        files: Iterable[str | Path] = (),
        since: float | None = None,
        timeout_s: float = 180.0,
    ) -> None:
        """Wait until every dag_id is parsed (after ``since``, a UNIX time, if given); an
        import error of one of ``files`` fails at once, with Airflow's stack trace."""
        watched = {str(Path(f).resolve()) for f in files}

        def done() -> bool:
            if watched:
                errors = {f: t for f, t in self.import_errors().items() if f in watched}
                if errors:
                    text = "\n".join(f"{f}:\n{t}" for f, t in errors.items())
                    raise LiveAirflowError(f"DAG files failed to import:\n{text}")
            return self.parsed(dag_ids, since) == set(dag_ids)

        def describe() -> str:
            missing = sorted(set(dag_ids) - self.parsed(dag_ids, since))
            errors = "\n".join(f"{f}:\n{t[-1500:]}" for f, t in self.import_errors().items())
            notes = "\n".join(
                "\n".join([f"{f}:", *lines[-8:]])
                for f in sorted(watched)
                if (lines := _notable(self.processor_log(f)))
            )
            killed = [
                line
                for line in _read(self.root / "dag-processor.log").splitlines()
                if "Killing it" in line
            ]
            return (
                f"not parsed: {missing}\nimport errors:\n{errors or '(none)'}\n"
                f"warnings and errors of the dag-processor's parses:\n{notes or '(none)'}\n"
                f"parses killed for taking too long:\n{chr(10).join(killed[-8:]) or '(none)'}"
            )

        self._wait(done, timeout_s, f"DAGs {sorted(dag_ids)} to be parsed", describe, 1.0)

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        rows = self.query("SELECT state FROM dag_run WHERE dag_id=? AND run_id=?", (dag_id, run_id))
        return rows[0]["state"] if rows else None

    def task_instances(self, dag_id: str, run_id: str) -> dict[tuple[str, int], TaskInstance]:
        rows = self.query(
            "SELECT task_id, map_index, state, try_number, start_date, end_date, duration "
            "FROM task_instance WHERE dag_id=? AND run_id=?",
            (dag_id, run_id),
        )
        return {
            (r["task_id"], r["map_index"]): TaskInstance(
                r["task_id"],
                r["map_index"],
                r["state"],
                r["try_number"],
                r["start_date"],
                r["end_date"],
                r["duration"],
            )
            for r in rows
        }

    def xcoms(self, dag_id: str, run_id: str) -> dict[tuple[str, int, str], Any]:
        rows = self.query(
            "SELECT task_id, map_index, key, value FROM xcom WHERE dag_id=? AND run_id=?",
            (dag_id, run_id),
        )
        return {(r["task_id"], r["map_index"], r["key"]): _decode(r["value"]) for r in rows}

    def xcom(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        *,
        map_index: int = -1,
        key: str = "return_value",
    ) -> Any:
        rows = self.query(
            "SELECT value FROM xcom WHERE dag_id=? AND run_id=? AND task_id=? AND map_index=? "
            "AND key=?",
            (dag_id, run_id, task_id, map_index, key),
        )
        if not rows:
            raise KeyError(f"no XCom {key!r} of {dag_id}/{run_id}/{task_id}[{map_index}]")
        return _decode(rows[0]["value"])

    # -- runs -------------------------------------------------------------------------------

    def trigger(
        self,
        dag_id: str,
        *,
        run_id: str | None = None,
        conf: Mapping[str, Any] | None = None,
        logical_date: str | None = None,
    ) -> str:
        """Start a run through the REST API, as a user would; returns its run id.

        ``logical_date`` (ISO 8601): the run's, as a scheduled run has one (``{{ ds }}``
        needs it); none by default, as a manual run through the API."""
        run_id = run_id or f"live__{uuid.uuid4().hex[:12]}"
        body = {"dag_run_id": run_id, "logical_date": logical_date, "conf": dict(conf or {})}
        for attempt in range(TRIGGER_ATTEMPTS):
            try:
                answer = self.request("POST", f"/api/v2/dags/{_q(dag_id)}/dagRuns", body)
                return str(answer["dag_run_id"])
            except (LiveAirflowError, TimeoutError, urllib.error.URLError) as err:
                # SQLite takes one writer at a time: with the scheduler busy, the API's
                # insert can time out on the lock ("Database error", HTTP 500) or answer
                # late; retry it
                retried = not isinstance(err, LiveAirflowError) or "HTTP 500" in str(err)
                if not retried or attempt == TRIGGER_ATTEMPTS - 1:
                    raise
                if self.run_state(dag_id, run_id) is not None:
                    return run_id  # the run was created; the audit log line failed
                time.sleep(1.0 + attempt)
        raise AssertionError("unreachable")

    def wait_runs(
        self, runs: Iterable[tuple[str, str]], timeout_s: float = 300.0
    ) -> dict[tuple[str, str], str]:
        """Wait until every (dag_id, run_id) has finished; their final states."""
        runs = list(runs)
        states: dict[tuple[str, str], str] = {}

        def done() -> bool:
            for dag_id, run_id in runs:
                if (dag_id, run_id) not in states:
                    state = self.run_state(dag_id, run_id)
                    if state in FINISHED:
                        states[dag_id, run_id] = state
            return len(states) == len(runs)

        def describe() -> str:
            lines = []
            for dag_id, run_id in runs:
                if (dag_id, run_id) in states:
                    continue
                tis = self.task_instances(dag_id, run_id)
                shown = ", ".join(f"{t}[{m}]={ti.state}" for (t, m), ti in sorted(tis.items()))
                lines.append(f"{dag_id}/{run_id}: {self.run_state(dag_id, run_id)}: {shown}")
            return "unfinished runs:\n" + "\n".join(lines)

        self._wait(done, timeout_s, f"{len(runs)} DAG runs to finish", describe, 1.0)
        return states

    # -- logs ---------------------------------------------------------------------------------

    def task_log_path(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        *,
        map_index: int = -1,
        try_number: int | None = None,
    ) -> Path:
        """Where Airflow wrote a task's log (the latest attempt unless ``try_number``)."""
        folder = self.logs / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        if map_index >= 0:
            folder = folder / f"map_index={map_index}"
        if try_number is not None:
            return folder / f"attempt={try_number}.log"
        attempts = sorted(folder.glob("attempt=*.log"), key=lambda p: int(p.stem.split("=")[1]))
        if not attempts:
            raise FileNotFoundError(f"no task log under {folder}")
        return attempts[-1]

    def task_log(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        *,
        map_index: int = -1,
        try_number: int | None = None,
    ) -> str:
        """A task's log as text: one line per event (Airflow 3 writes JSON lines; each
        becomes ``[level] logger: event``, with ``type: message`` of each exception it
        carries under it; other lines are kept as they are)."""
        path = self.task_log_path(
            dag_id, run_id, task_id, map_index=map_index, try_number=try_number
        )
        return _render(path.read_text(errors="replace"))

    def processor_log(self, dag_file: str | Path) -> str:
        """What the dag-processor logged while parsing ``dag_file`` (a file of the dags
        folder), as text like :meth:`task_log`: the warnings a parse logs land here
        (``logs/dag_processor/<date>/dags-folder/<file>.log``), not in the UI."""
        rel = Path(dag_file).resolve().relative_to(self.dags)
        logs = sorted((self.logs / "dag_processor").glob(f"*/dags-folder/{rel}.log"))
        return "\n".join(_render(p.read_text(errors="replace")) for p in logs)

    # -- REST -----------------------------------------------------------------------------------

    def token(self) -> str:
        """A JWT from the simple auth manager (every user is an admin here)."""
        if self._token is None:
            self._token = str(self.request("GET", "/auth/token", auth=False)["access_token"])
        return self._token

    def request(
        self, method: str, path: str, body: Any = None, *, auth: bool = True
    ) -> dict[str, Any]:
        """One REST call (with the auth manager's token unless ``auth=False``): the decoded
        JSON answer, or :class:`LiveAirflowError` with the status and the server's detail."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if auth:
            req.add_header("Authorization", f"Bearer {self.token()}")
        try:
            with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")[:2000]
            raise LiveAirflowError(f"{method} {path}: HTTP {err.code}: {detail}") from None


def _render(raw: str) -> str:
    """Airflow 3's JSON-lines log as text: ``[level] logger: event`` per event."""
    lines = []
    for line in raw.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            lines.append(line)
            continue
        level, logger = event.get("level", ""), event.get("logger", "")
        lines.append(f"[{level}] {logger}: {event.get('event', '')}")
        for exc in event.get("error_detail") or []:  # an exception, as the UI shows it
            if isinstance(exc, dict):
                lines.append(f"    {exc.get('exc_type', '')}: {exc.get('exc_value', '')}")
    return "\n".join(lines)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _notable(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(("[warning]", "[error]"))]


def _q(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _decode(value: Any) -> Any:
    if isinstance(value, bytes | str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _unix(stamp: str) -> float:
    from datetime import UTC, datetime

    parsed = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
