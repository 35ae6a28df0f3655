"""Workflows over faulty/faulty_app.py, fault injection on real workers, and leak checks.

Shared by the tests of this folder and by ``benchmarks/faults.py`` / ``benchmarks/load.py``
(which put the repository root on ``sys.path`` and import ``tests.reliability.harness``).

A fault scenario runs the workflow ``make -> work (mapped, N instances) -> total`` once on
a :class:`LocalLambda` with one fault armed for one instance, then checks what a user
relies on: which stage and instance failed and why, how many attempts were made, that
every output a successful invocation reported is in the store with the right value (none
lost, none written twice), and that no worker process, child process, temporary file or
cgroup folder is left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wisefuse_plugins.ir import Collect, Const, Item, Stage, Workflow, callable_ref, derive_edges
from wisefuse_plugins.plan.schema import Plan, Unit, hashes_of
from wisefuse_plugins.runtime import store as st
from wisefuse_plugins.runtime.backends import cgroups
from wisefuse_plugins.runtime.backends.local import LocalLambda, host_info
from wisefuse_plugins.runtime.backends.units import LocalUnits
from wisefuse_plugins.runtime.executor import Call, RunFailed, execute

from .faulty import faulty_app

ROOT = Path(faulty_app.__file__).resolve().parent
HOST = host_info()

#: The faults a scenario can inject (see faulty_app.inject; "half-write-scatter" is
#: "half-write-after-2" on ``make``).
FAULTS = (
    "raise",
    "kill",
    "oom",
    "timeout",
    "timeout-escaped",
    "half-write",
    "half-write-scatter",
    "kill-in-write",
    "exit",
)


# --------------------------------------------------------------------------- workflows


def stage(fn, sid: str | None = None, **kw: Any) -> Stage:
    return Stage(id=sid or fn.__name__, callable=callable_ref(fn, ROOT), **kw)


def fault_workflow(
    ctl: str | Path, n: int = 6, retries: int = 1, make_retries: int = 0, name: str = "faults"
) -> Workflow:
    """make(n) -> work (mapped over make's list, ``retries``) -> total (gather)."""
    stages = [
        stage(
            faulty_app.make,
            bindings={"n": Const(value=n), "ctl": Const(value=str(ctl))},
            retries=make_retries,
        ),
        stage(
            faulty_app.work,
            bindings={"x": Item(stage="make"), "ctl": Const(value=str(ctl))},
            parallelism=n,
            parallelism_source="expected",
            retries=retries,
        ),
        stage(faulty_app.total, bindings={"values": Collect(stage="work")}),
    ]
    return Workflow(name=name, stages=stages, edges=derive_edges(stages))


def plan_of(
    wf: Workflow,
    groups: list[list[str]],
    bundle: dict[str, int] | None = None,
    memory: dict[str, int] | None = None,
    default_mb: int = 1769,
) -> Plan:
    bundle, memory = bundle or {}, memory or {}
    units = [
        Unit(
            id="-".join(g),
            stages=g,
            bundle_size=bundle.get(g[0], 1),
            memory_mb=memory.get(g[0], default_mb),
        )
        for g in groups
    ]
    return Plan(workflow=wf.name, units=units, code_hashes=hashes_of(wf))


#: Plans of fault_workflow: work bundled two instances per invocation (instance 2k runs and
#: is stored before 2k+1 starts: one thread at 1769 MB), or each unit alone.
PLANS = {
    "bundled": ([["make"], ["work"], ["total"]], {"work": 2}),
    "single": ([["make"], ["work"], ["total"]], {}),
    "fused": ([["make", "work"], ["total"]], {}),
}


# --------------------------------------------------------------------------- processes


def _stat(pid: int) -> tuple[str, int] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1])
    except (OSError, ValueError, IndexError):
        return None


def describe(pid: int) -> str:
    """``pid state=S ppid=N cmd`` of a process, for a leak's report."""
    found = _stat(pid)
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        cmd = "?"
    state, ppid = found if found is not None else ("gone", -1)
    return f"{pid} state={state} ppid={ppid} (self={os.getpid()}) {cmd.strip()}"


def alive(pid: int) -> bool:
    """A running process (not a zombie)."""
    found = _stat(pid)
    return found is not None and found[0] not in ("Z", "X")


def descendants(root: int | None = None) -> set[int]:
    """Live processes below ``root`` (default: this process), at any depth."""
    root = os.getpid() if root is None else root
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            found = _stat(int(entry))
            if found is not None and found[0] not in ("Z", "X"):
                children.setdefault(found[1], []).append(int(entry))
    out: set[int] = set()
    todo = [root]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def processes_with(marker: str | Path) -> set[int]:
    """Live processes whose environment mentions ``marker`` (a test's own folder).

    Workers get the unit spec's path in their environment and pass it on to whatever they
    start, so this finds our workers and their children even after they were orphaned,
    and never another test's processes on a shared machine.
    """
    needle = str(marker).encode()
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ and alive(int(entry)):
            found.add(int(entry))
    return found


def backend_processes(lam: LocalLambda) -> set[int]:
    """The processes a backend may legitimately keep: its workers and its fork server."""
    keep = set(lam.worker_pids())
    server = getattr(lam, "forkserver_pid", None)
    if server:
        keep.add(server)
    return keep


def own_groups(hierarchy: cgroups.Hierarchy, pid: int | None = None) -> list[Path]:
    """Cgroup folders owned by ``pid`` (default: this process): for leak checks."""
    owner = f"{cgroups.PREFIX}{os.getpid() if pid is None else pid}-"
    try:
        return sorted(d for d in hierarchy.base.iterdir() if d.name.startswith(owner))
    except OSError:
        return []


def own_cgroups() -> list[Path]:
    found: list[Path] = []
    for h in (HOST.cpu_cgroup, HOST.memory_cgroup):
        if h is not None:
            found += own_groups(h)
    return found


def temp_files(root: Path) -> list[Path]:
    """Partial writes left in a local store (``LocalStore`` writes ``.tmp-*`` then links)."""
    return sorted(p for p in root.rglob(".tmp-*"))


def wait_until(predicate, timeout_s: float = 5.0, step_s: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(step_s)
    return True


def task_children(ctl: Path) -> list[int]:
    """Pids of processes the tasks started (the ``timeout`` fault starts one)."""
    return [int(p.read_text()) for p in ctl.glob("child-*") if p.read_text().strip()]


# --------------------------------------------------------------------------- scenarios


@dataclass
class Outcome:
    """What one run under one fault gave."""

    fault: str
    run_id: str
    ok: bool  # the run completed
    result: Any  # the total, when it completed
    error: dict[str, Any] | None  # RunFailed.error, when it did not
    message: str  # str(RunFailed)
    attempts: int  # invocations of the faulty chunk
    executions: dict[str, int]  # how often each task input really ran
    lost: list[str] = field(default_factory=list)  # reported outputs missing or wrong
    duplicated: list[str] = field(default_factory=list)  # keys written by two invocations
    stray: list[str] = field(default_factory=list)  # keys no invocation reported
    leaked: list[int] = field(default_factory=list)  # processes left behind
    leaked_info: list[str] = field(default_factory=list)  # state, parent, command line
    temp_files: list[str] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.stray or self.leaked or self.temp_files)


def arm(ctl: Path, target: int | str, kind: str, always: bool = False) -> None:
    (ctl / f"{'always' if always else 'arm'}-{target}").write_text(kind)


def _killer(ctl: Path, target: int | str, stop: threading.Event) -> threading.Thread:
    """SIGKILL the worker that runs ``target`` once it says it started (from another thread)."""

    def run() -> None:
        victim = ctl / f"victim-{target}"
        while not stop.is_set():
            with contextlib.suppress(OSError, ValueError):
                pid = int(victim.read_text())
                os.kill(pid, signal.SIGKILL)
                victim.unlink()
            time.sleep(0.01)

    thread = threading.Thread(target=run, name="killer", daemon=True)
    thread.start()
    return thread


def expected_values(n: int) -> dict[str, Any]:
    """Every key a successful run stores, with its value."""
    out: dict[str, Any] = {"make/out.pkl": list(range(n))}
    for i in range(n):
        out[f"make/e{i}.pkl"] = i
        out[f"work/i{i}.pkl"] = i * i + 1
    out["total/out.pkl"] = faulty_app.expected_total(n)
    return out


def audit(store: st.Store, run_id: str, calls: list[Call], n: int) -> tuple[list, list, list]:
    """(lost, duplicated, stray): outputs successful invocations reported but the store
    lacks or holds a wrong value for; keys two invocations both claim to have written;
    keys in the store that no invocation reported."""
    expected = expected_values(n)
    prefix = f"runs/{run_id}/"
    reported: set[str] = set()
    writers: dict[str, int] = {}
    for c in calls:
        if not c.ok:
            continue
        for out in c.invoked.payload.get("outputs", []):
            key = out["key"]
            reported.add(key)
            writers[key] = writers.get(key, 0) + bool(out.get("written"))
            if out["stage"] == "make" and "count" in out:  # scattered elements
                reported.update(f"{prefix}make/e{i}.pkl" for i in range(out["count"]))
    lost = []
    for key in sorted(reported):
        try:
            value = st.get(store, key)
        except st.StoreError:
            lost.append(key)
            continue
        if value != expected.get(key.removeprefix(prefix)):
            lost.append(key)
    duplicated = sorted(k for k, w in writers.items() if w > 1)
    present = set(store.list(f"runs/{run_id}"))
    stray = sorted(k for k in present - reported if k.removeprefix(prefix) not in expected)
    return lost, duplicated, stray


def run_scenario(
    lam: LocalLambda,
    store: st.LocalStore,
    tmp: Path,
    fault: str,
    *,
    n: int = 6,
    target: int | str = 3,
    retries: int = 1,
    always: bool = False,
    plan_name: str = "bundled",
    timeout_s: float = 30.0,
    run_id: str | None = None,
    memory: dict[str, int] | None = None,
) -> Outcome:
    """Run fault_workflow once with ``fault`` armed for input ``target``; audit the result.

    ``half-write-scatter`` makes the store's third write of ``make`` (its list, element 0,
    then element 1) fail half-way: it tests a retry that resumes a partly stored unit.
    """
    ctl = tmp / "ctl"
    ctl.mkdir(parents=True, exist_ok=True)
    kind = fault
    if fault == "half-write-scatter":
        target, kind = "make", "half-write-after-2"
    make_retries = retries if target == "make" else 0
    wf = fault_workflow(ctl, n=n, retries=retries, make_retries=make_retries)
    groups, bundle = PLANS[plan_name]
    memory = memory if memory is not None else ({"work": 256} if fault == "oom" else {})
    plan = plan_of(wf, groups, bundle, memory)
    units = LocalUnits(lam, store.url, ROOT, timeout_s=timeout_s)
    if fault != "none":
        arm(ctl, target, kind, always)
    stop = threading.Event()
    killer = _killer(ctl, target, stop) if fault == "kill" else None
    run_id = run_id or f"r-{fault}-{time.monotonic_ns()}"
    before = descendants()
    ok, result, error, message, calls = False, None, None, "", []
    try:
        run = execute(wf, plan, units, store, workdir=tmp / "units", run_id=run_id)
        ok, result, calls = True, run.outputs["total"], run.calls
    except RunFailed as failed:
        error, message, calls = failed.error, str(failed), failed.calls
    finally:
        stop.set()
        if killer is not None:
            killer.join()
    lost, duplicated, stray = audit(store, run_id, calls, n)
    target_chunk = _chunk_of(plan, wf, target)
    attempts = sum(1 for c in calls if (c.unit, c.instances) == target_chunk)
    executions = {p.name[6:]: len(p.read_text().split()) for p in ctl.glob("calls-*")}
    # processes: only the backend's own may remain, and what tasks started must be gone
    wait_until(lambda: not [p for p in task_children(ctl) if alive(p)])

    def left_behind() -> set[int]:
        keep = backend_processes(lam)
        return (
            (descendants() - before - keep)
            | (processes_with(tmp) - keep)
            | {p for p in task_children(ctl) if alive(p)}
        )

    # a worker the backend killed (timeout, out of memory) is gone once it is reaped;
    # on a loaded machine that takes a moment: only what outlives 10 s is a leak
    wait_until(lambda: not left_behind(), timeout_s=10.0, step_s=0.1)
    leaked = sorted(left_behind())
    leaked_info = [describe(p) for p in leaked]
    return Outcome(
        fault=fault,
        run_id=run_id,
        ok=ok,
        result=result,
        error=error,
        message=message,
        attempts=attempts,
        executions=executions,
        lost=lost,
        duplicated=duplicated,
        stray=stray,
        leaked=leaked,
        leaked_info=leaked_info,
        temp_files=[str(p) for p in temp_files(store.root)],
        calls=calls,
    )


def _chunk_of(plan: Plan, wf: Workflow, target: int | str) -> tuple[str, list[int] | None]:
    if target == "make":
        unit = plan.unit_of("make")
        assert unit is not None
        return unit.id, None
    unit = plan.unit_of("work")
    assert unit is not None
    if all(wf.stage(s).mapped for s in unit.stages):
        b = unit.bundle_size
        start = (int(target) // b) * b
        return unit.id, list(range(start, min(start + b, wf.stage("work").parallelism)))
    return unit.id, None


def reset_ctl(tmp: Path) -> None:
    """Forget the control files of a previous scenario (counts, victims, children)."""
    ctl = tmp / "ctl"
    if ctl.exists():
        for p in ctl.iterdir():
            p.unlink()


def summary(outcome: Outcome) -> str:
    """One line for a failed assertion."""
    return json.dumps(
        {
            "fault": outcome.fault,
            "ok": outcome.ok,
            "message": outcome.message,
            "attempts": outcome.attempts,
            "lost": outcome.lost,
            "duplicated": outcome.duplicated,
            "stray": outcome.stray,
            "leaked": outcome.leaked_info or outcome.leaked,
            "temp_files": outcome.temp_files,
        }
    )
