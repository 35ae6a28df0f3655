"""Plan files under Airflow: a DAG run finishes with the plan it started with.

Airflow parses a DAG file again in every task's process, and for a non-versioned bundle
(the default dags folder) its scheduler moves every unfinished run to the DAG's latest
parsed shape. A drop-in DAG's shape comes from its plan file, so replacing the file while
a run is in flight would change the run's tasks under it. Three records, kept in a folder
every Airflow component on the machine shares (:func:`state_dir`), prevent that:

- **snapshots**: every plan file served, by the SHA-256 of its bytes (``snapshots/<sha>``),
  so a plan can be served after its file was replaced;
- **served**: per dag_id, the plan the last serving parse (the dag-processor's) built the
  DAG from, or none (the original DAG);
- **pins**: per (dag_id, run_id), the plan that run runs, written once, atomically, by the
  run's first task process (its parse reads what is served) and touched by each later one.

A serving parse (dag-processor, callbacks, a plain import) keeps the plan that live pins
name while the file holds another one, and switches when they are gone: a run releases
its pin from the DAG's ``on_success_callback`` / ``on_failure_callback`` (they run in the
dag-processor; :class:`ReleasePin`), and a pin whose run never reported expires after the
DAG's ``dagrun_timeout`` or :data:`DEFAULT_PIN_TTL` since its last task started. A task
process uses its run's pin. Decisions and pin writes are serialised by a file lock per DAG.

No Airflow import at module level: the compat function :func:`airflow_run` imports it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple

from wisefuse_plugins.errors import WiseFuseError

log = logging.getLogger("wisefuse_plugins.airflow")

STATE_ENV = "WISEFUSE_PLAN_STATE"
"""The folder of snapshots, served records and pins (default ``$WISEFUSE_HOME/airflow-plans``)."""
PINS_ENV = "WISEFUSE_PLAN_PINS"
"""``0`` turns pinning off (a versioned DAG bundle pins runs to their files by itself)."""
TTL_ENV = "WISEFUSE_PIN_TTL_HOURS"
DEFAULT_PIN_TTL = dt.timedelta(hours=24)
"""How long a pin lives after its run's last task started, when the DAG has no
``dagrun_timeout`` and the run never reports its end (set ``$WISEFUSE_PIN_TTL_HOURS``)."""

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class PlanFileError(WiseFuseError):
    """A plan or IR file that cannot be used: it names the file, the reason and the fix."""


# --------------------------------------------------------------------------- paths


def beside(value: str | os.PathLike[str], fileloc: str | None) -> Path:
    """``value`` as an absolute path; a relative one is relative to the DAG file's folder.

    One rule for the drop-in (``rewrite(dag, "x.plan.json")``) and the operator's files:
    the DAG file's folder (``dag.fileloc``), not the working directory of whichever Airflow
    process parses it. Without a DAG file (a DAG built in a script) the working directory.
    """
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    base = Path(fileloc).resolve().parent if fileloc else Path.cwd()
    return base / path


def state_dir() -> Path:
    """``$WISEFUSE_PLAN_STATE``, else ``$WISEFUSE_HOME/airflow-plans``."""
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV]).expanduser()
    from wisefuse_plugins.runtime.store import wisefuse_home

    return wisefuse_home() / "airflow-plans"


def pinning_enabled() -> bool:
    return os.environ.get(PINS_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def sha_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _key(text: str) -> str:
    """A file name for ``text`` (a dag_id or run_id): readable, collision-free."""
    clean = _UNSAFE.sub("_", text).strip("._-")[:60] or "x"
    return f"{clean}-{sha_of(text.encode())[:12]}"


def read_file(path: Path, what: str, fix: str) -> bytes:
    """The bytes of a plan or IR file, or a :class:`PlanFileError` naming it, why and the fix."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise PlanFileError(f"the {what} {str(path)!r} does not exist", hint=fix) from None
    except OSError as err:
        raise PlanFileError(
            f"the {what} {str(path)!r} cannot be read: {err.strerror or err}", hint=fix
        ) from None


# --------------------------------------------------------------------------- Airflow (compat)


def airflow_run() -> tuple[str, str] | None:
    """``(dag_id, run_id)`` when this process parses DAG files to run a task of that run.

    The one place that knows how (Airflow 3.x): the task runner parses the DAG file inside
    ``_airflow_parsing_context_manager(dag_id, task_id)`` (read back by the public
    ``airflow.sdk.get_parsing_context()``), after binding ``run_id`` among structlog's
    context variables (``task_runner.startup``). Anything missing: None (a serving parse).
    """
    try:
        from airflow.sdk import get_parsing_context

        dag_id = get_parsing_context().dag_id
        if not dag_id:
            return None
        import structlog.contextvars

        run_id = structlog.contextvars.get_contextvars().get("run_id")
    except Exception:
        return None
    return (str(dag_id), str(run_id)) if run_id else None


# --------------------------------------------------------------------------- records


# The records here are NamedTuples and plain classes, not dataclasses: every parse of a
# drop-in DAG imports this module in a fresh process, and making a dataclass costs ~1 ms.


class Pin(NamedTuple):
    run_id: str
    sha: str | None  # None: the run runs the original DAG (no usable plan was served)
    touched: float


class PlanState:
    """Snapshots, served records and pins under ``root`` (default :func:`state_dir`; see
    the module docstring)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else state_dir()

    def __repr__(self) -> str:
        return f"PlanState(root={self.root!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlanState) and other.root == self.root

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass it was

    # -- snapshots -------------------------------------------------------------------

    def snapshot(self, data: bytes) -> str:
        """Keep ``data`` by its SHA-256 (written once, atomically); returns the sha."""
        sha = sha_of(data)
        path = self.root / "snapshots" / sha
        if not path.exists():
            _write_atomic(path, data)
        return sha

    def snapshot_bytes(self, sha: str) -> bytes | None:
        try:
            return (self.root / "snapshots" / sha).read_bytes()
        except OSError:
            return None

    # -- per DAG ---------------------------------------------------------------------

    def _dag(self, dag_id: str) -> Path:
        return self.root / "dags" / _key(dag_id)

    @contextlib.contextmanager
    def locked(self, dag_id: str) -> Iterator[None]:
        """Serialise decisions and pin writes for one DAG across processes (``flock``)."""
        folder = self._dag(dag_id)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".lock", "a+b") as fh:
            try:
                import fcntl
            except ImportError:  # pragma: no cover - no flock (Windows): Airflow needs POSIX
                yield
                return
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def served(self, dag_id: str) -> tuple[bool, str | None]:
        """``(known, sha)``: whether a serving parse recorded a plan for ``dag_id``, and which."""
        try:
            doc = json.loads((self._dag(dag_id) / "served.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False, None
        return True, doc.get("sha")

    def set_served(self, dag_id: str, sha: str | None, source: str) -> None:
        if self.served(dag_id) == (True, sha):
            return
        doc = {"dag_id": dag_id, "sha": sha, "file": source, "since": time.time()}
        _write_atomic(self._dag(dag_id) / "served.json", json.dumps(doc).encode())

    def _pin_path(self, dag_id: str, run_id: str) -> Path:
        return self._dag(dag_id) / "pins" / f"{_key(run_id)}.json"

    def pin_of(self, dag_id: str, run_id: str) -> Pin | None:
        path = self._pin_path(dag_id, run_id)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            return Pin(run_id=doc["run_id"], sha=doc.get("sha"), touched=path.stat().st_mtime)
        except (OSError, ValueError, KeyError):
            return None

    def pin(self, dag_id: str, run_id: str, sha: str | None) -> Pin:
        """Pin ``run_id`` to ``sha`` unless it is pinned already (then touch it); the pin."""
        found = self.pin_of(dag_id, run_id)
        path = self._pin_path(dag_id, run_id)
        if found is not None:
            with contextlib.suppress(OSError):
                os.utime(path)
            return Pin(found.run_id, found.sha, time.time())
        doc = {"dag_id": dag_id, "run_id": run_id, "sha": sha, "pinned_at": time.time()}
        _write_atomic(path, json.dumps(doc).encode(), exclusive=True)
        return self.pin_of(dag_id, run_id) or Pin(run_id, sha, time.time())

    def release(self, dag_id: str, run_id: str) -> bool:
        """Forget ``run_id``'s pin (its run ended); True if there was one."""
        try:
            self._pin_path(dag_id, run_id).unlink()
            return True
        except FileNotFoundError:
            return False

    def live_pins(self, dag_id: str, ttl: dt.timedelta) -> tuple[list[Pin], list[Pin]]:
        """``(live, expired)`` pins of ``dag_id``; expired ones are removed."""
        live: list[Pin] = []
        expired: list[Pin] = []
        now = time.time()
        for path in sorted((self._dag(dag_id) / "pins").glob("*.json")):
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
                pin = Pin(run_id=doc["run_id"], sha=doc.get("sha"), touched=path.stat().st_mtime)
            except (OSError, ValueError, KeyError):
                continue
            if now - pin.touched > ttl.total_seconds():
                with contextlib.suppress(OSError):
                    path.unlink()
                expired.append(pin)
            else:
                live.append(pin)
        return live, expired


def _write_atomic(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write through a temporary file; ``exclusive``: never replace an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    try:
        tmp.write_bytes(data)
        if exclusive:
            with contextlib.suppress(FileExistsError):  # another process pinned first
                os.link(tmp, path)
        else:
            tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- choosing


Origin = Literal["file", "pinned", "kept", "none"]


class Choice(NamedTuple):
    """The plan a parse builds its DAG from.

    ``text``/``sha``: the plan's bytes and SHA-256, None for no plan (the original DAG).
    ``origin``: ``file`` (the file as it is now), ``pinned`` (this run's pin), ``kept`` (the
    plan live runs are pinned to, while the file holds another), ``none`` (no plan).
    ``problem``: why the file itself could not be used, if it could not. ``waiting``: the
    runs a changed plan file waits for. ``expired``: pins dropped by this parse.
    """

    text: bytes | None
    sha: str | None
    origin: Origin
    problem: str | None = None
    waiting: tuple[str, ...] = ()
    expired: tuple[str, ...] = ()


def _read_current(path: Path) -> tuple[bytes | None, str | None]:
    try:
        return read_file(path, "plan file", ""), None
    except PlanFileError as err:
        return None, err.message


def choose_plan(
    dag_id: str,
    path: Path,
    *,
    ttl: dt.timedelta = DEFAULT_PIN_TTL,
    run: tuple[str, str] | None = None,
    state: PlanState | None = None,
) -> Choice:
    """Which plan a parse of ``dag_id`` (plan file ``path``) builds the DAG from.

    ``run``: :func:`airflow_run`'s answer (the caller passes it so tests can). A task
    process of one of ``dag_id``'s runs uses that run's pin, pinning it to what is served
    on its first parse; a task process of another DAG reads what is served and writes
    nothing; any other parse serves: the file, unless live pins name another plan.
    """
    current, problem = _read_current(path)
    cur_sha = sha_of(current) if current is not None else None
    if not pinning_enabled():
        return Choice(current, cur_sha, "file" if current is not None else "none", problem)
    state = state or PlanState()
    try:
        if run is not None and run[0] != dag_id:
            known, sha = state.served(dag_id)
            if known and sha != cur_sha:
                text = state.snapshot_bytes(sha) if sha else None
                if sha is None or text is not None:
                    return Choice(text, sha, "kept" if sha else "none", problem)
            return Choice(current, cur_sha, "file" if current is not None else "none", problem)
        with state.locked(dag_id):
            if run is not None:
                return _for_run(state, dag_id, run[1], current, cur_sha, problem)
            return _serving(state, dag_id, path, ttl, current, cur_sha, problem)
    except OSError as err:  # a read-only or full state folder must not break the DAG file
        log.warning(
            "DAG %r: plan pins unavailable under %s (%s): runs use the plan file as it is",
            dag_id,
            state.root,
            err,
        )
        return Choice(current, cur_sha, "file" if current is not None else "none", problem)


def _for_run(
    state: PlanState,
    dag_id: str,
    run_id: str,
    current: bytes | None,
    cur_sha: str | None,
    problem: str | None,
) -> Choice:
    pin = state.pin_of(dag_id, run_id)
    if pin is None:
        known, sha = state.served(dag_id)
        if not known or (sha is not None and state.snapshot_bytes(sha) is None):
            sha = state.snapshot(current) if current is not None else None
        pin = state.pin(dag_id, run_id, sha)
    else:
        pin = state.pin(dag_id, run_id, pin.sha)  # touch: the run is alive
    if pin.sha is None:
        return Choice(None, None, "none", problem or "the run started without a usable plan")
    text = state.snapshot_bytes(pin.sha)
    if text is None and pin.sha == cur_sha:
        text = current
    if text is None:
        return Choice(
            None,
            pin.sha,
            "none",
            f"run {run_id!r} is pinned to plan {pin.sha[:12]}, whose snapshot is missing "
            f"from {state.root / 'snapshots'}",
        )
    return Choice(text, pin.sha, "pinned", problem if pin.sha != cur_sha else None)


def _serving(
    state: PlanState,
    dag_id: str,
    path: Path,
    ttl: dt.timedelta,
    current: bytes | None,
    cur_sha: str | None,
    problem: str | None,
) -> Choice:
    live, expired = state.live_pins(dag_id, ttl)
    gone = tuple(p.run_id for p in expired)
    if gone:
        log.warning(
            "DAG %r: the plan pins of runs %s expired (no end reported within %s of their "
            "last task start): they no longer hold the plan back",
            dag_id,
            list(gone),
            ttl,
        )
    if live:
        known, served = state.served(dag_id)
        shas = {p.sha for p in live}
        keep = served if known and served in shas else max(live, key=lambda p: p.touched).sha
        if keep != cur_sha:
            text = state.snapshot_bytes(keep) if keep is not None else None
            if keep is None or text is not None:
                waiting = tuple(p.run_id for p in live if p.sha == keep)
                return Choice(text, keep, "kept" if keep else "none", problem, waiting, gone)
    if current is None:
        state.set_served(dag_id, None, str(path))
        return Choice(None, None, "none", problem, expired=gone)
    state.snapshot(current)
    state.set_served(dag_id, cur_sha, str(path))
    return Choice(current, cur_sha, "file", None, expired=gone)


def pin_ttl(dag: Any) -> dt.timedelta:
    """How long a pin of ``dag``'s runs lives without news: ``$WISEFUSE_PIN_TTL_HOURS``,
    else the DAG's ``dagrun_timeout``, else :data:`DEFAULT_PIN_TTL`."""
    raw = os.environ.get(TTL_ENV)
    if raw:
        with contextlib.suppress(ValueError):
            return dt.timedelta(hours=float(raw))
    timeout = getattr(dag, "dagrun_timeout", None)
    return (
        timeout
        if isinstance(timeout, dt.timedelta) and timeout > dt.timedelta(0)
        else DEFAULT_PIN_TTL
    )


# --------------------------------------------------------------------------- run ends


class ReleasePin:
    """A DAG callback that releases the run's pin (added to both of a rewritten DAG's
    ``on_success_callback`` and ``on_failure_callback``, after the user's own).

    When the last pin goes and the plan file no longer holds the served plan, it touches
    the DAG file (``fileloc``) so that the dag-processor parses it again at once (it sorts
    files by modification time) rather than at its next ``min_file_process_interval``.
    A plain class (not a tuple: Airflow takes a list or tuple of callbacks for several).
    """

    __slots__ = ("dag_id", "fileloc", "plan", "root")

    def __init__(
        self, dag_id: str, root: str, plan: str | None = None, fileloc: str | None = None
    ) -> None:
        self.dag_id, self.root, self.plan, self.fileloc = dag_id, root, plan, fileloc

    def _fields(self) -> tuple[str, str, str | None, str | None]:
        return (self.dag_id, self.root, self.plan, self.fileloc)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ReleasePin) and other._fields() == self._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return "ReleasePin(dag_id={!r}, root={!r}, plan={!r}, fileloc={!r})".format(*self._fields())

    def __call__(self, context: Mapping[str, Any]) -> None:
        run_id = context.get("run_id") or getattr(context.get("dag_run"), "run_id", None)
        if not run_id:
            return
        state = PlanState(Path(self.root))
        try:
            with state.locked(self.dag_id):
                state.release(self.dag_id, str(run_id))
                if self.plan and self.fileloc and self._switch_due(state):
                    os.utime(self.fileloc)
        except OSError as err:  # a callback must not fail the others
            log.warning(
                "DAG %r: could not release the plan pin of %r: %s", self.dag_id, run_id, err
            )

    def _switch_due(self, state: PlanState) -> bool:
        if any((state._dag(self.dag_id) / "pins").glob("*.json")):
            return False
        current, _ = _read_current(Path(str(self.plan)))
        return state.served(self.dag_id)[1] != (sha_of(current) if current is not None else None)


def with_release(callbacks: Any, release: ReleasePin) -> list[Any]:
    """The user's callbacks (one, a list, or none), kept in order, then ``release`` once."""
    if callbacks is None:
        found: list[Any] = []
    elif isinstance(callbacks, list | tuple):
        found = list(callbacks)
    else:
        found = [callbacks]
    return [c for c in found if not isinstance(c, ReleasePin)] + [release]


# --------------------------------------------------------------------------- emitted files


EMITTED_FIX = (
    "put back the plan and IR files written with this DAG file, or re-emit the DAG file "
    "from the new plan (wisefuse_plugins.emitters.airflow.write_dag) and deploy the three "
    "files together"
)


def pinned_bytes(
    path: Path, sha: str | None, what: str, state: PlanState | None = None
) -> tuple[bytes, str | None]:
    """The bytes of an emitted DAG file's plan or IR file: the file when it is the one the
    DAG file was emitted for (``sha``; kept as a snapshot), else that one's snapshot.

    Returns ``(bytes, note)``; ``note`` says why the file itself was not used. Raises a
    :class:`PlanFileError` naming the file, the reason and the fix when neither will do.
    """
    state = state or PlanState()
    try:
        data: bytes | None = read_file(path, what, EMITTED_FIX)
        problem = None
    except PlanFileError as err:
        data, problem = None, err.message
    if data is not None and (sha is None or sha_of(data) == sha):
        with contextlib.suppress(OSError):
            state.snapshot(data)
        return data, None
    if data is not None:
        problem = (
            f"the {what} {str(path)!r} is not the one this DAG file was emitted for "
            f"(its SHA-256 is {sha_of(data)[:12]}, the DAG file's {str(sha)[:12]})"
        )
    kept = state.snapshot_bytes(sha) if sha else None
    if kept is not None:
        return kept, f"{problem}; the units run the {what} it was emitted with (a snapshot)"
    where = f" and {state.root / 'snapshots'} keeps no copy of it" if sha else ""
    raise PlanFileError(f"{problem}{where}", hint=EMITTED_FIX)


class PlanFiles(NamedTuple):
    """An emitted DAG file's plan and IR files, with the SHA-256 of the ones it was
    emitted for: :attr:`units` are the operator's arguments, :meth:`check` (at parse
    time) puts any problem with them where an Airflow user sees it."""

    plan: Path
    plan_sha: str | None
    workflow: Path
    workflow_sha: str | None

    @property
    def units(self) -> dict[str, str | None]:
        return {
            "plan": str(self.plan),
            "plan_sha": self.plan_sha,
            "workflow": str(self.workflow),
            "workflow_sha": self.workflow_sha,
        }

    def problems(self) -> list[str]:
        """What is wrong with the files (an empty list when they are the emitted ones)."""
        found: list[str] = []
        for path, sha, what in (
            (self.plan, self.plan_sha, "plan file"),
            (self.workflow, self.workflow_sha, "IR file"),
        ):
            try:
                _, note = pinned_bytes(path, sha, what)
            except PlanFileError as err:
                found.append(f"{err.message}: its unit tasks will fail")
            except OSError as err:  # pragma: no cover - an unreadable state folder
                found.append(f"{what} {str(path)!r}: {err}")
            else:
                if note:
                    found.append(note)
        return found

    def check(self, dag: Any) -> list[str]:
        """Log and show (DAG docs and a tag) each problem; returns them."""
        found = self.problems()
        if found:
            message = "; ".join(found) + f". Fix: {EMITTED_FIX}."
            log.warning("DAG %r: %s", getattr(dag, "dag_id", "?"), message)
            annotate(dag, message, TAG_FILES)
        return found


# --------------------------------------------------------------------------- the UI


TAG_NOT_USED = "wisefuse: plan not used"
TAG_WAITING = "wisefuse: new plan waiting"
TAG_FILES = "wisefuse: plan file problem"
_NOTE = "> **WiseFuse:** "


def annotate(dag: Any, message: str, tag: str) -> None:
    """Show ``message`` where an Airflow user sees a DAG's problems: a tag in the DAG list
    and a note at the top of the DAG's docs (Airflow 3 captures parse-time warnings and
    log lines only in the dag-processor's per-file log, and its DAG warnings take only
    Airflow's own types)."""
    note = f"{_NOTE}{message}"
    doc = getattr(dag, "doc_md", None) or ""
    if note not in doc:
        dag.doc_md = f"{note}\n\n{doc}" if doc else note
    tags = getattr(dag, "tags", None)
    if tags is not None and tag not in tags:
        if hasattr(tags, "add"):
            tags.add(tag)
        else:  # pragma: no cover - older DAG classes keep a list
            tags.append(tag)
