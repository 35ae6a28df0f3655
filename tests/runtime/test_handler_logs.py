"""What a unit's functions print and log comes back in the handler's response (``logs``),
attributed to the stage and instance that wrote it, bounded, and still on the real streams."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from pathlib import Path

import pytest

from wisefuse_plugins.ir import Const, Item, Stage, Workflow, callable_ref, derive_edges
from wisefuse_plugins.plan.schema import Plan, Unit, hashes_of
from wisefuse_plugins.runtime import capture
from wisefuse_plugins.runtime import handler as handler_module
from wisefuse_plugins.runtime import store as st
from wisefuse_plugins.runtime.backends.local import LocalLambda
from wisefuse_plugins.runtime.backends.units import LocalUnits
from wisefuse_plugins.runtime.executor import prepare
from wisefuse_plugins.runtime.handler import LoadedUnit, run_unit
from wisefuse_plugins.runtime.loader import load_callable
from wisefuse_plugins.runtime.spec import read_spec

from .toy import chatty_app

ROOT = Path(chatty_app.__file__).resolve().parent
LOGS = {"log_bytes": capture.LOG_BYTES}  # what the Airflow operator asks for


def chain(second=chatty_app.shout, n: int = 4, **kw) -> Workflow:
    """numbers -> <second> mapped over its list."""
    stages = [
        Stage(
            id="numbers",
            callable=callable_ref(chatty_app.numbers, ROOT),
            bindings={"n": Const(value=n)},
        ),
        Stage(
            id="each",
            callable=callable_ref(second, ROOT),
            bindings={"x": Item(stage="numbers")},
            parallelism=n,
            **kw,
        ),
    ]
    return Workflow(name="chatty", stages=stages, edges=derive_edges(stages))


def deployment(
    wf: Workflow, groups, tmp_path: Path, unit_id: str, bundle=None, root=ROOT, load=True
):
    units = [
        Unit(id="-".join(g), stages=g, bundle_size=(bundle or {}).get(g[0], 1)) for g in groups
    ]
    plan = Plan(workflow=wf.name, units=units, code_hashes=hashes_of(wf))
    spec_path = prepare(wf, plan, tmp_path / "units")[unit_id]
    spec = read_spec(spec_path)
    store = st.LocalStore(tmp_path / "store")
    if not load:  # the handler loads it (and prints what it prints at import)
        return None, spec_path, store
    fns = {s.id: load_callable(s.callable, root) for s in spec.stages}
    return LoadedUnit(spec, root, store, fns), spec_path, store


def lines_of(response, stage=None, stream=None):
    return [
        (r["instance"], r["line"])
        for r in response["logs"]
        if (stage is None or r["stage"] == stage) and (stream is None or r["stream"] == stream)
    ]


def test_lines_are_captured_per_stage_and_instance_and_still_printed(tmp_path, capsys):
    dep, _, _ = deployment(chain(), [["numbers", "each"]], tmp_path, "numbers-each")
    out = run_unit(dep, {"run_id": "r1", **LOGS}, 3538)  # two threads run the mapped instances
    assert out["ok"] and out["threads"] == 2
    assert lines_of(out, "numbers", "stdout") == [(None, "making 4 numbers")]
    logged = [r for r in out["logs"] if r["stream"] == "log"]
    assert dep.functions["numbers"].__module__.startswith("wisefuse_user_")
    mod = "chatty_app"  # the logger's name as the user knows it, not the loader's
    assert {(r["stage"], r["instance"], r["level"], r["line"]) for r in logged} == {
        ("numbers", None, "INFO", f"INFO {mod}: made 4 numbers"),
        *{("each", i, "WARNING", f"WARNING {mod}: warning of {i}") for i in range(4)},
    }
    # a line written in three parts while another instance wrote is one line of its instance
    assert sorted(lines_of(out, "each", "stdout")) == [(i, f"instance of {i}") for i in range(4)]
    assert sorted(lines_of(out, "each", "stderr")) == [(i, f"stderr of {i}") for i in range(4)]
    real = capsys.readouterr()
    assert "making 4 numbers\n" in real.out and "stderr of 3\n" in real.err
    # the real stream has every write, in the order they happened (interleaved)
    assert real.out.count("instance ") == 4 and real.out.count("of ") == 4
    json.dumps(out)  # the response stays JSON


def test_bundle_instances_and_fused_stages_are_attributed(tmp_path):
    wf = chain()
    stages = [*wf.stages]
    stages.append(
        Stage(
            id="again",
            callable=callable_ref(chatty_app.shout, ROOT),
            bindings={"x": Item(stage="each")},
            parallelism=4,
        )
    )
    wf = Workflow(name="chatty", stages=stages, edges=derive_edges(stages))
    dep, _, _ = deployment(
        wf, [["numbers"], ["each", "again"]], tmp_path, "each-again", bundle={"each": 2}
    )
    first, _, _ = deployment(wf, [["numbers"], ["each", "again"]], tmp_path, "numbers")
    assert run_unit(first, {"run_id": "r1", **LOGS}, 1769)["ok"]
    out = run_unit(dep, {"run_id": "r1", "instances": [2, 3], **LOGS}, 3538)
    assert out["ok"] and out["threads"] == 2
    for stage in ("each", "again"):
        assert sorted(lines_of(out, stage, "stdout")) == [
            (2, "instance of 2"),
            (3, "instance of 3"),
        ]


def test_a_failing_stage_returns_what_it_printed_before_raising(tmp_path):
    wf = chain(chatty_app.fail_after_print, n=2)
    dep, _, _ = deployment(wf, [["numbers", "each"]], tmp_path, "numbers-each")
    out = run_unit(dep, {"run_id": "r1", **LOGS}, 1769)
    assert not out["ok"] and out["error"]["stage"] == "each" and out["error"]["instance"] == 0
    assert lines_of(out, "each") == [
        (0, "about to fail on 0"),
        (0, "ERROR chatty_app: failing now"),
    ]


def test_the_cap_keeps_the_first_lines_and_says_how_many_were_cut(tmp_path, capsys):
    lines = 3000  # 3000 lines of 112 characters: over 256 KB with their JSON
    wf = Workflow(
        name="chatty",
        stages=[
            Stage(
                id="flood",
                callable=callable_ref(chatty_app.flood, ROOT),
                bindings={"lines": Const(value=lines)},
            )
        ],
        edges=[],
    )
    dep, _, _ = deployment(wf, [["flood"]], tmp_path, "flood")
    out = run_unit(dep, {"run_id": "r1", **LOGS}, 1769)
    assert out["ok"]
    kept, marker = out["logs"][:-1], out["logs"][-1]
    assert len(json.dumps(kept)) <= capture.LOG_BYTES
    assert len(json.dumps(kept)) > capture.LOG_BYTES * 0.9  # the budget is used, not wasted
    assert [r["line"][:11] for r in kept] == [f"line {i:06d}" for i in range(len(kept))]
    cut = lines - len(kept)
    assert marker["stream"] == "wisefuse" and marker["level"] == "WARNING"
    assert marker["line"].startswith(f"... {cut:,} more lines ({cut * 112:,} characters) cut")
    assert "the function's log" in marker["line"]
    assert capsys.readouterr().out.count("\nline ") == lines - 1  # all of them, really printed


def test_a_long_line_is_split_and_a_last_partial_line_is_kept(tmp_path):
    root, level = logging.getLogger(), logging.getLogger().level
    with capture.capturing() as cap:
        assert root.level == min(level, logging.INFO)  # records from INFO reach the capture
        with cap.stage("s", 1):
            sys.stdout.write("y" * (capture.SPLIT_CHARS * 2 + 5) + "\nend")
            sys.stdout.write(" of it")
        cap_parts = cap.close()
    assert [len(r["line"]) for r in cap_parts] == [capture.SPLIT_CHARS] * 2 + [5, 9]
    assert cap_parts[-1] == {"stage": "s", "instance": 1, "stream": "stdout", "line": "end of it"}
    assert not isinstance(sys.stdout, capture._Tee)  # the streams are given back
    assert capture._HANDLER not in root.handlers and root.level == level  # and the root logger


def test_outside_a_functions_own_environment_other_threads_are_not_captured(tmp_path, capsys):
    dep, _, _ = deployment(
        chain(chatty_app.in_thread, n=2), [["numbers", "each"]], tmp_path, "numbers-each"
    )
    out = run_unit(
        dep, {"run_id": "r1", **LOGS}, 1769
    )  # in-process: this process runs other things
    assert out["ok"] and lines_of(out, "each") == []
    assert "thread of 1\n" in capsys.readouterr().out


def test_the_lambda_entry_point_captures_setup_and_threads(tmp_path, monkeypatch):
    # a fresh copy of the app: its module-level print runs at this cold start
    root = tmp_path / "code"
    root.mkdir()
    shutil.copy(ROOT / "chatty_app.py", root / "chatty_app.py")
    wf = chain(chatty_app.in_thread, n=3)
    _, spec_path, store = deployment(
        wf, [["numbers", "each"]], tmp_path, "numbers-each", root=root, load=False
    )
    monkeypatch.setenv(handler_module.ENV_SPEC, str(spec_path))
    monkeypatch.setenv(handler_module.ENV_ROOT, str(root))
    monkeypatch.setenv(handler_module.ENV_STORE, store.url)
    monkeypatch.setattr(handler_module, "_loaded", None)
    out = handler_module.handler({"run_id": "r1", **LOGS}, None)  # 1769 MB: one thread
    assert out["ok"]
    assert lines_of(out, "<setup>") == [(None, "chatty_app imported")]
    # a thread the function started has no context: in the function's own environment its
    # lines go to the only stage instance running
    assert lines_of(out, "each") == [(i, f"thread of {i}") for i in range(3)]
    warm = handler_module.handler({"run_id": "r2", **LOGS}, None)
    assert lines_of(warm, "<setup>") == []  # warm: nothing imported again


def test_without_log_bytes_nothing_is_captured_or_patched(tmp_path, capsys):
    dep, _, _ = deployment(chain(n=2), [["numbers", "each"]], tmp_path, "numbers-each")
    stdout = sys.stdout
    out = run_unit(dep, {"run_id": "r1"}, 1769)  # Step Functions: a state holds 256 KB
    assert out["ok"] and "logs" not in out and sys.stdout is stdout
    assert "making 2 numbers" in capsys.readouterr().out
    for bad in (-1, capture.LOG_BYTES + 1, "256k", True):
        out = run_unit(dep, {"run_id": "r1", "log_bytes": bad}, 1769)
        assert (
            not out["ok"] and "event.log_bytes must be a number of bytes" in out["error"]["message"]
        )


def test_capture_overhead_on_a_warm_invocation_is_small(tmp_path):
    dep, _, _ = deployment(chain(n=2), [["numbers", "each"]], tmp_path, "numbers-each")

    def per_call(event: dict) -> float:
        for _ in range(3):
            run_unit(dep, event, 1769)
        start = time.perf_counter()
        for _ in range(20):
            assert run_unit(dep, event, 1769)["ok"]
        return (time.perf_counter() - start) / 20

    with_logs, without = per_call({"run_id": "w", **LOGS}), per_call({"run_id": "w"})
    # each instance sleeps 3 x 2 ms; 8 lines and 3 records captured cost well under 5 ms
    assert with_logs - without < 0.005, (with_logs, without)


@pytest.fixture(scope="module")
def lam():
    with LocalLambda(keep_alive_s=60, concurrency_limit=4) as backend:
        yield backend


def test_on_a_real_worker_lines_are_in_the_response_and_the_functions_log(lam, tmp_path):
    wf = chain(chatty_app.configures_logging, n=2)
    _, spec_path, store = deployment(
        wf, [["numbers", "each"]], tmp_path, "numbers-each", load=False
    )
    units = LocalUnits(lam, store.url, ROOT, timeout_s=30)
    units.deploy(Unit(id="chatty-logs", stages=["numbers", "each"]), spec_path)
    inv = lam.invoke("chatty-logs", {"run_id": "r1", **LOGS})
    assert inv.error is None and inv.payload["ok"]
    records = inv.payload["logs"]
    assert ("<setup>", "chatty_app imported") in [(r["stage"], r["line"]) for r in records]
    name = chatty_app.__name__.rsplit(".", 1)[-1]
    # no handler on the worker's root logger: the record is written to the real stderr
    info = [r for r in records if r["stage"] == "numbers" and r["stream"] == "log"]
    assert len(info) == 1 and info[0]["line"].endswith(": made 2 numbers")
    assert "INFO " in inv.logs and "made 2 numbers" in inv.logs and "making 2 numbers" in inv.logs
    assert name in records_module(records)
    # a StreamHandler on the captured stderr and the capture's own handler on the root logger
    # both see each record: it is captured once, and written to the real log once
    for invocation in (inv, lam.invoke("chatty-logs", {"run_id": "r2", **LOGS})):  # cold, then warm
        records = invocation.payload["logs"]
        each = [(r["instance"], r["stream"], r["line"]) for r in records if r["stage"] == "each"]
        assert sorted(each) == [(i, "log", f"WARNING:chatty.own:configured {i}") for i in (0, 1)]
        assert invocation.logs.count("configured 1") == 1
    assert not any(r["stage"] == "<setup>" for r in records)  # warm: nothing imported


def records_module(records) -> str:
    """The user module's name in the worker (the loader mangles it)."""
    line = next(r["line"] for r in records if r["line"].endswith(": made 2 numbers"))
    return line.split(" ", 1)[1].rsplit(":", 1)[0]


def test_a_runtime_handler_writing_records_to_stdout_is_captured_once(lam, tmp_path):
    """The Lambda runtime's own root handler writes records to ``sys.stdout``: each record is
    captured once (as the record), and reaches the function's log once."""
    wf = chain(chatty_app.under_runtime_logging, n=2)
    _, spec_path, store = deployment(
        wf, [["numbers", "each"]], tmp_path, "numbers-each", load=False
    )
    units = LocalUnits(lam, store.url, ROOT, timeout_s=30)
    units.deploy(Unit(id="chatty-runtime", stages=["numbers", "each"]), spec_path)
    lines = []
    for run_id in ("r1", "r2"):  # the runtime's handler after the capture's, then before it
        inv = lam.invoke("chatty-runtime", {"run_id": run_id, **LOGS})
        each = [r for r in inv.payload["logs"] if r["stage"] == "each"]
        assert [(r["instance"], r["stream"], r["level"]) for r in each] == [
            (0, "log", "WARNING"),
            (1, "log", "WARNING"),
        ]
        assert inv.logs.count("runtime 1") == 1
        lines.append([r["line"] for r in each])
    assert lines == [
        ["WARNING chatty_app: runtime 0", "WARNING chatty_app: runtime 1"],
        ["[WARNING]\truntime 0", "[WARNING]\truntime 1"],
    ]


def test_a_unit_killed_at_its_timeout_still_reports_what_it_printed(lam, tmp_path):
    """No response comes back from a timed-out unit, so no ``logs`` field: what the function
    printed reaches the caller as Lambda's log tail (``Invoked.log_tail``), which the Airflow
    operator writes to the task log."""
    wf = chain(chatty_app.print_then_hang, n=1)
    _, spec_path, store = deployment(
        wf, [["numbers", "each"]], tmp_path, "numbers-each", load=False
    )
    units = LocalUnits(lam, store.url, ROOT, timeout_s=2)
    units.deploy(Unit(id="chatty-hangs", stages=["numbers", "each"]), spec_path)
    invoked = units.invoke("chatty-hangs", {"run_id": "r1", **LOGS})
    assert invoked.error is not None and "timed out" in invoked.error["message"].lower()
    assert "logs" not in invoked.payload
    assert "hanging on 0" in invoked.log_tail and "making 1 numbers" in invoked.log_tail
