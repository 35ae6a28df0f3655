"""Faults during a run, on the local backend's real worker processes.

Each fault is injected into instance 3 of ``work`` (mapped over 4 inputs, bundled two per
invocation: instance 2 is computed and stored before 3 starts). A transient fault (first
attempt only) must be retried and recover without recomputing what was stored; a
permanent one must exhaust exactly the stage's retry policy and name the stage, the
instance and the reason. In every case the store holds each reported output once with
its right value, and no process, temporary file or cgroup folder survives (the
``backend`` fixture checks the latter after closing the backend).
"""

from __future__ import annotations

import threading

import pytest

from wisefuse_plugins.runtime import store as st
from wisefuse_plugins.runtime.backends.units import LocalUnits
from wisefuse_plugins.runtime.executor import prepare

from .faulty import faulty_app
from .harness import (
    HOST,
    PLANS,
    ROOT,
    alive,
    fault_workflow,
    plan_of,
    processes_with,
    reset_ctl,
    run_scenario,
    summary,
)

N = 4  # inputs of work: bundles [0, 1] and [2, 3]
EXPECTED = faulty_app.expected_total(N)
TIMEOUT_S = 2.5  # the units' timeout in the timeout faults: short, for the test's sake


def _timeout(fault: str) -> float:
    """Other faults get a timeout a busy host never reaches (an OOM at 0.14 vCPU may take
    seconds to reach the limit, and must not turn into a timeout)."""
    return TIMEOUT_S if fault.startswith("timeout") else 60.0


TRANSIENT = [
    "raise",
    "kill",  # SIGKILL of the worker from another thread while the task runs
    "oom",
    "timeout",  # the task also started a child process: it must die with the worker
    pytest.param(
        "timeout-escaped",  # a child in a session of its own: the worker's cgroup has it
        marks=pytest.mark.skipif(
            HOST.memory_cgroup is None and HOST.cpu_cgroup is None, reason="no cgroups here"
        ),
    ),
    "half-write",  # the store's write gets half the bytes, then ENOSPC
    "half-write-scatter",  # make's 3rd write fails: the retry resumes a partly stored unit
    "kill-in-write",  # the worker dies half-way through writing an output
    "exit",
]


def _store(tmp_path) -> st.LocalStore:
    return st.LocalStore(tmp_path / "store")


@pytest.mark.parametrize("fault", TRANSIENT)
def test_transient_fault_is_retried_and_nothing_is_lost(backend, tmp_path, fault):
    out = run_scenario(backend, _store(tmp_path), tmp_path, fault, n=N, timeout_s=_timeout(fault))
    assert out.ok and out.result == EXPECTED, summary(out)
    assert out.attempts == 2, summary(out)  # one failure, one retry (retries=1)
    assert out.clean, summary(out)
    if fault == "half-write-scatter":
        # make stored its list and element 0 before failing: the retry loads them
        assert out.executions == {"make": 1, **{str(i): 1 for i in range(N)}}
    else:
        # the faulty input ran twice; its bundle sibling (2) was stored before the
        # fault and is loaded on the retry, not recomputed; the rest ran once
        assert out.executions == {"make": 1, **{str(i): 1 + (i == 3) for i in range(N)}}
    retry = next(c for c in out.calls if c.attempt == 1)
    resumed = {t["instance"]: t["resumed"] for t in retry.invoked.payload["timings"]}
    if fault != "half-write-scatter":
        assert resumed == {2: True, 3: False}


@pytest.mark.parametrize(
    ("fault", "retries", "reason"),
    [
        ("raise", 0, "ValueError: injected failure for input 3"),
        ("raise", 2, "ValueError: injected failure for input 3"),
        ("oom", 1, "Runtime.OutOfMemory: Runtime exited with error: signal: killed"),
        ("timeout", 0, "Sandbox.Timedout"),
        ("half-write", 1, "OSError: [Errno 28] No space left on device"),
        ("exit", 0, "Runtime.ExitError: Runtime exited with error: exit status 3"),
    ],
)
def test_permanent_fault_follows_the_retry_policy_and_says_where(
    backend, tmp_path, fault, retries, reason
):
    if fault == "oom" and HOST.memory_cgroup is None:
        reason = "MemoryError"  # RLIMIT_AS: the handler sees a MemoryError
    out = run_scenario(
        backend,
        _store(tmp_path),
        tmp_path,
        fault,
        n=N,
        retries=retries,
        always=True,
        timeout_s=_timeout(fault),
    )
    assert not out.ok
    assert out.attempts == retries + 1, summary(out)
    assert out.executions["3"] == retries + 1
    assert out.error is not None and out.error["stage"] == "work"
    handler_saw_it = fault in ("raise", "half-write") or "MemoryError" in reason
    if handler_saw_it:  # the handler names the instance and keeps the traceback
        assert out.error["instance"] == 3
        assert "Traceback" in out.error["traceback"]
        assert "run failed in unit 'work', stage 'work' instance 3: " in out.message
    else:  # the runtime died: the invocation's instances
        assert out.error["instances"] == [2, 3]
        assert "run failed in unit 'work', stage 'work' instances [2, 3]: " in out.message
    assert reason in out.message, out.message
    # what finished before the failure is stored, once, with its value; total never ran
    assert out.clean, summary(out)
    assert not any(c.unit == "total" for c in out.calls)
    stored = _store(tmp_path).list(f"runs/{out.run_id}/work")
    assert [k.rsplit("/", 1)[1] for k in stored] == ["i0.pkl", "i1.pkl", "i2.pkl"]


def test_a_failed_run_run_again_rewrites_nothing(backend, tmp_path):
    store = _store(tmp_path)
    failed = run_scenario(backend, store, tmp_path, "kill", n=N, retries=0, run_id="r-again")
    assert not failed.ok and "signal: killed" in failed.message
    keys = {k: store.get_bytes(k) for k in store.list("runs/r-again")}
    reset_ctl(tmp_path)  # the fault was consumed; start counting again
    again = run_scenario(backend, store, tmp_path, "none", n=N, retries=0, run_id="r-again")
    assert again.ok and again.result == EXPECTED, summary(again)
    assert again.clean, summary(again)
    for key, data in keys.items():  # first write wins: the re-run changed nothing stored
        assert store.get_bytes(key) == data
    rewritten = [
        o["key"]
        for c in again.calls
        for o in c.invoked.payload["outputs"]
        if o["written"] and o["key"] in keys
    ]
    assert rewritten == []


def test_death_in_a_fused_unit_names_its_stages(backend, tmp_path):
    out = run_scenario(
        backend,
        _store(tmp_path),
        tmp_path,
        "exit",
        n=N,
        retries=0,
        always=True,
        plan_name="fused",
    )
    assert not out.ok and out.error is not None
    assert out.error["stages"] == ["make", "work"]
    assert "one of stages 'make', 'work'" in out.message
    assert out.clean, summary(out)


def test_duplicate_deliveries_write_each_output_once(backend, tmp_path):
    """At-least-once delivery: the same chunk invoked twice at once (a retry racing the
    first attempt). Both succeed; each output is written by exactly one of them."""
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    store = _store(tmp_path)
    wf = fault_workflow(ctl, n=N)
    groups, bundle = PLANS["bundled"]
    plan = plan_of(wf, groups, bundle)
    units = LocalUnits(backend, store.url, ROOT, timeout_s=30)
    for unit_id, path in prepare(wf, plan, tmp_path / "units").items():
        units.deploy(plan.unit(unit_id), path)
    made = units.invoke("make", {"run_id": "dup"})
    assert made.payload["ok"], made.payload
    barrier = threading.Barrier(4)
    answers: list = []

    def deliver(resume: bool) -> None:
        barrier.wait()
        event = {"run_id": "dup", "instances": [2, 3], "counts": {"make": N}, "resume": resume}
        answers.append(units.invoke("work", event))

    threads = [threading.Thread(target=deliver, args=(i % 2 == 1,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(a.error is None and a.payload["ok"] for a in answers), answers
    for key in ("runs/dup/work/i2.pkl", "runs/dup/work/i3.pkl"):
        writers = [o for a in answers for o in a.payload["outputs"] if o["key"] == key]
        assert len(writers) == 4 and sum(o["written"] for o in writers) == 1
        assert st.get(store, key) == int(key[-5]) ** 2 + 1
    assert not list(store.root.rglob(".tmp-*"))


def test_the_leak_check_sees_an_escaped_process(tmp_path, monkeypatch):
    """The check the scenarios rely on finds a detached process by its environment."""
    import os
    import subprocess

    monkeypatch.setenv("WISEFUSE_UNIT_SPEC", str(tmp_path / "units" / "x.unit.json"))
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True, env=dict(os.environ))
    try:
        assert proc.pid in processes_with(tmp_path)
    finally:
        proc.kill()
        proc.wait()
    assert not alive(proc.pid) and proc.pid not in processes_with(tmp_path)


def test_out_of_memory_without_cgroups_is_a_memory_error_of_the_instance(tmp_path):
    """Without the cgroup memory controller the limit is RLIMIT_AS: the task itself gets a
    MemoryError, so the handler can name the instance."""
    from wisefuse_plugins.runtime.backends.local import LocalLambda

    with LocalLambda(memory="rlimit", keep_alive_s=60) as lam:
        out = run_scenario(
            lam, _store(tmp_path), tmp_path, "oom", n=N, retries=0, always=True, timeout_s=30
        )
    assert not out.ok and out.attempts == 1
    assert "stage 'work' instance 3: MemoryError: out of memory (the unit's memory limit)" in (
        out.message
    )
    assert out.clean, summary(out)
