"""Bad input: each gives one clear error (what, where, why, and a fix) and no partial output.

IR and plan documents (cyclic, inconsistent, corrupt, truncated, of the wrong kind or
version), plans for another version of the code or beyond Lambda's limits, missing or
stale profiles, SLOs that cannot be met, outputs that cannot be stored, and outputs far
above Lambda's 6 MB response limit (they go through the store). DAG files that do not
import and unknown operators are in test_airflow_inputs.py.
"""

from __future__ import annotations

import json
import logging
import shutil
import textwrap

import numpy as np
import pytest

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.ir import (
    Collect,
    Const,
    IRError,
    Item,
    Output,
    Stage,
    Workflow,
    callable_ref,
    derive_edges,
    dump,
    from_json,
    load,
    to_json,
)
from wisefuse_plugins.model.predict import Model, ModelError
from wisefuse_plugins.model.profile import StageProfile
from wisefuse_plugins.optimizer.search import optimize
from wisefuse_plugins.optimizer.space import SLOError, parse_slo
from wisefuse_plugins.plan.limits import MAX_SYNC_RESPONSE_BYTES, MAX_TIMEOUT_S
from wisefuse_plugins.plan.schema import (
    check_plan,
    dump_plan,
    load_plan,
    plan_from_json,
    plan_to_json,
)
from wisefuse_plugins.runtime import store as st
from wisefuse_plugins.runtime.backends.units import LocalUnits
from wisefuse_plugins.runtime.executor import RunFailed, execute

from .faulty import faulty_app
from .harness import PLANS, ROOT, fault_workflow, plan_of, stage, temp_files

# --------------------------------------------------------------------------- documents


@pytest.fixture
def wf(tmp_path) -> Workflow:
    return fault_workflow(tmp_path / "ctl", n=4)


def _doc(wf: Workflow) -> dict:
    return json.loads(to_json(wf))


def _problems(err: IRError) -> dict[str, str]:
    return dict(err.problems)


def test_a_cycle_is_named_with_its_path(wf):
    doc = _doc(wf)
    doc["workflow"]["edges"].append(
        {"src": "total", "dst": "make", "kind": "control", "pattern": "one_to_one"}
    )
    with pytest.raises(IRError) as info:
        from_json(json.dumps(doc))
    assert _problems(info.value) == {
        "$.workflow.edges": "the graph has a cycle: make -> work -> total -> make"
    }
    assert str(info.value).startswith("invalid IR: $.workflow.edges: the graph has a cycle")


def test_an_inconsistent_ir_lists_every_problem_at_once(wf):
    doc = _doc(wf)
    stages = doc["workflow"]["stages"]
    stages[0]["callable"] = None
    stages[2]["bindings"]["values"]["stage"] = "ghost"
    stages[1]["bindings"]["x"] = {"kind": "output", "stage": "make"}  # no longer mapped...
    with pytest.raises(IRError) as info:
        from_json(json.dumps(doc))
    found = _problems(info.value)
    assert found["$.workflow.stages[0].callable"] == "python stage 'make' has no callable"
    assert found["$.workflow.stages[2].bindings.values"] == (
        "reads stage 'ghost', which does not exist"
    )
    assert found["$.workflow.stages[1].parallelism"].startswith(  # ...but has 4 instances
        "stage 'work' is not mapped (no item bindings) but has parallelism 4"
    )
    assert len(info.value.problems) >= 4 and "(and " in str(info.value)


@pytest.mark.parametrize(
    ("text", "path", "reason"),
    [
        ("", "$", "not valid JSON"),
        ("{", "$", "not valid JSON"),
        ("[1, 2]", "$", "expected a JSON object, got list"),
        ('{"format": "wisefuse-ir", "version": 1}', "$.workflow", "required field is missing"),
        ('{"format": "wisefuse-ir", "version": 2, "workflow": {}}', "$.version", "unsupported"),
        ('{"format": "wisefuse-ir", "version": true, "workflow": {}}', "$.version", "unsupported"),
        ('{"format": "something-else", "version": 1}', "$.format", "expected 'wisefuse-ir'"),
    ],
)
def test_corrupt_ir_text(text, path, reason):
    with pytest.raises(IRError) as info:
        from_json(text)
    assert info.value.path == path and reason in info.value.reason


def test_truncated_and_unreadable_files(tmp_path, wf):
    whole = to_json(wf)
    ir = tmp_path / "wf.ir.json"
    for cut in (1, len(whole) // 3, len(whole) // 2, len(whole) - 3):
        ir.write_text(whole[:cut])
        with pytest.raises(IRError) as info:
            load(ir)
        assert info.value.reason.startswith("not valid JSON")
        assert info.value.hint == "is the file complete? re-create it with wisefuse"
        assert str(ir) in str(info.value)
    ir.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(IRError, match="cannot read it"):
        load(ir)
    with pytest.raises(IRError, match="the file does not exist"):
        load(tmp_path / "missing.json")
    plan_file = dump_plan(plan_of(wf, *PLANS["bundled"]), tmp_path / "plan.json")
    with pytest.raises(IRError, match="expected 'wisefuse-ir', got 'wisefuse-plan'"):
        load(plan_file)  # a plan where the IR belongs
    text = plan_file.read_text()
    plan_file.write_text(text[: len(text) // 2])
    with pytest.raises(IRError, match="not valid JSON"):
        load_plan(plan_file, wf)
    dump(wf, ir)
    with pytest.raises(IRError, match="expected 'wisefuse-plan', got 'wisefuse-ir'"):
        load_plan(ir, wf)


def test_the_cli_refuses_a_corrupt_ir_and_writes_no_plan(tmp_path, wf, capsys):
    from wisefuse_plugins.cli import main

    ir = tmp_path / "wf.ir.json"
    ir.write_text(to_json(wf)[:200])
    out = tmp_path / "plan.json"
    with pytest.raises(SystemExit) as info:
        main(["optimize", str(ir), "--out", str(out), "--no-observe"])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert "error: invalid IR file" in err and "not valid JSON" in err
    assert "hint: is the file complete?" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == [ir]  # no plan, not even half of one


# --------------------------------------------------------------------------- plans


def test_plans_beyond_lambda_limits_name_the_unit_and_the_limit(wf):
    doc = json.loads(plan_to_json(plan_of(wf, *PLANS["bundled"])))
    units = doc["plan"]["units"]
    units[0]["memory_mb"] = 64
    units[1]["memory_mb"] = 20_000
    units[1]["bundle_size"] = 0
    units[2]["arch"] = "sparc"
    with pytest.raises(IRError) as info:
        plan_from_json(json.dumps(doc), wf)
    found = _problems(info.value)
    assert found["$.plan.units[0].memory_mb"] == "Input should be greater than or equal to 128"
    assert found["$.plan.units[1].memory_mb"] == "Input should be less than or equal to 10240"
    assert found["$.plan.units[1].bundle_size"] == "Input should be greater than or equal to 1"
    assert found["$.plan.units[2].arch"] == "Input should be 'x86_64' or 'arm64'"
    for bad_id in ("make\n", "a/b", "x" * 65, ""):
        doc = json.loads(plan_to_json(plan_of(wf, *PLANS["bundled"])))
        doc["plan"]["units"][0]["id"] = bad_id
        with pytest.raises(IRError, match="not a valid Lambda name"):
            plan_from_json(json.dumps(doc), wf)


def _app_copy(tmp_path):
    root = tmp_path / "code"
    root.mkdir()
    shutil.copy(faulty_app.__file__, root / "faulty_app.py")
    return root


def _workflow_from(root, ctl) -> Workflow:
    """fault_workflow over the copy of the app in ``root`` (imported fresh from there)."""
    import importlib.util
    import sys
    import uuid

    name = f"faulty_app_copy_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, root / "faulty_app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)

    def at(fn, **kw):
        return Stage(id=fn.__name__, callable=callable_ref(fn, root), **kw)

    stages = [
        at(module.make, bindings={"n": Const(value=4)}),
        at(module.work, bindings={"x": Item(stage="make"), "ctl": Const(value=str(ctl))}),
        at(module.total, bindings={"values": Collect(stage="work")}),
    ]
    stages[1] = stages[1].model_copy(update={"parallelism": 4})
    return Workflow(name="faults", stages=stages, edges=derive_edges(stages))


def test_a_plan_for_another_version_of_the_code_is_refused(tmp_path, backend):
    root = _app_copy(tmp_path)
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    old = _workflow_from(root, ctl)
    plan = plan_of(old, *PLANS["single"])
    source = (root / "faulty_app.py").read_text()
    (root / "faulty_app.py").write_text(
        source.replace("    return x * x + 1\n", "    return x * x + 2  # changed\n")
    )
    new = _workflow_from(root, ctl)
    with pytest.raises(IRError) as info:
        check_plan(plan, new)
    assert _problems(info.value) == {
        "$.code_hashes.work": "stage 'work' changed since the plan was made (code hash differs)"
    }
    assert info.value.hint == "re-run `wisefuse optimize` for the current code"
    # deployed before the change, run after it: the workers refuse the changed function
    store = st.LocalStore(tmp_path / "store")
    units = LocalUnits(backend, store.url, root, timeout_s=30)
    with pytest.raises(RunFailed) as failed:
        execute(old, plan, units, store, workdir=tmp_path / "units", run_id="stale")
    assert failed.value.error["stage"] == "<setup>"
    assert failed.value.error["type"] == "CodeLoadError"
    assert "faulty_app.py:work is not the code the plan was made for (code hash differs)" in str(
        failed.value
    )
    assert store.list("runs/stale/work") == [] and store.list("runs/stale/total") == []


# --------------------------------------------------------------------------- model, SLO


def _profiles(wf: Workflow, ms: dict[str, float], peak: float = 100.0, n: int = 30):
    rng = np.random.default_rng(0)
    out = {}
    for s in wf.python_stages:
        base = ms.get(s.id, 50.0)
        samples = {
            ("x86_64", m): base * (1769 / min(m, 1769)) * rng.lognormal(0, 0.05, n)
            for m in (512, 1769, 3538)
        }
        out[s.id] = StageProfile(
            stage=s.id,
            code_hash=s.callable.code_hash,
            samples=samples,
            output_bytes=1e3,
            peak_memory_mb=peak,
        )
    return out


def test_missing_stale_or_too_few_profiles(wf):
    profiles = _profiles(wf, {})
    del profiles["work"]
    with pytest.raises(ModelError) as info:
        optimize(wf, Model(profiles, draws=200), "2x")
    assert str(info.value) == "no profile for stage 'work' of workflow 'faults'"
    assert info.value.hint == "run `wisefuse profile` on the workflow first"
    profiles = _profiles(wf, {})
    profiles["work"].code_hash = "0" * 64  # measured on another version of the function
    with pytest.raises(ModelError, match="for another version of its code"):
        optimize(wf, Model(profiles, draws=200), "2x")
    # one sample at one memory size is few, but enough to plan with: no crash
    profiles = _profiles(wf, {})
    profiles["work"].samples = {("x86_64", 1769): np.array([80.0])}
    planned = optimize(wf, Model(profiles, draws=200), "3x")
    check_plan(planned.plan, wf)


def test_a_profile_archive_with_gaps_gives_a_model_error(tmp_path, wf):
    from wisefuse_plugins.profiles.archive import Archive, Sample

    with Archive(f"sqlite:///{tmp_path / 'profiles.sqlite'}") as archive:
        for s in wf.python_stages:
            if s.id == "total":
                continue  # never profiled
            code = s.callable.code_hash if s.id != "work" else "f" * 64  # old code of work
            archive.add(
                Sample(workflow=wf.name, stage=s.id, code_hash=code, memory_mb=m, duration_ms=10.0)
                for m in (512, 1769)
            )
        profiles = archive.profiles_for(wf)
    assert set(profiles) == {"make"}  # samples of old code are never reused
    with pytest.raises(ModelError, match=r"no profile for stage '(work|total)'"):
        Model(profiles).check(wf)


def test_an_slo_that_cannot_be_met_returns_the_fastest_plan_and_says_so(wf, caplog):
    model = Model(_profiles(wf, {"work": 400.0}), draws=300)
    with caplog.at_level(logging.WARNING, logger="wisefuse_plugins.optimizer.search"):
        planned = optimize(wf, model, 0.001)
    assert not planned.meets_slo and planned.slo_s == 0.001
    check_plan(planned.plan, wf)
    fastest = optimize(wf, model, 1e9, objective="latency")
    assert planned.prediction.p95_s == pytest.approx(fastest.prediction.p95_s, rel=0.05)
    assert any("no plan meets the SLO of 0.001 s" in r.getMessage() for r in caplog.records)
    for bad in ("fast", "-3", "0", "nan", "1.5y"):
        with pytest.raises(SLOError):
            parse_slo(bad, 10.0)


def _plan_with_a_stage_over_the_timeout(wf: Workflow):
    slow = {"work": 2_000_000.0}  # 2000 s at one vCPU, single-threaded: over 900 s anywhere
    return optimize(wf, Model(_profiles(wf, slow), draws=200), "2x")


def test_a_stage_longer_than_the_lambda_timeout_never_gives_a_plan_said_to_work(wf):
    try:
        planned = _plan_with_a_stage_over_the_timeout(wf)
    except WiseFuseError:
        return  # refusing is fine
    assert not planned.meets_slo


def test_a_stage_longer_than_the_lambda_timeout_is_a_clear_error(wf, caplog):
    with caplog.at_level(logging.WARNING):
        try:
            _plan_with_a_stage_over_the_timeout(wf)
        except WiseFuseError as err:
            assert "work" in str(err) and ("900" in str(err) or "timeout" in str(err))
            return
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "work" in said and ("900" in said or "timeout" in said), said


def test_fused_units_stay_under_the_timeout(wf):
    """Each stage fits in 900 s but two fused would not: the plan never fuses them."""
    model = Model(_profiles(wf, {"make": 400_000.0, "work": 400_000.0}, n=20), draws=200)
    planned = optimize(wf, model, "20x")
    check_plan(planned.plan, wf)
    assert all(u.p99_invocation_ms < 0.8 * MAX_TIMEOUT_S * 1000 for u in planned.prediction.units)


# --------------------------------------------------------------------------- outputs


def _run(backend, tmp_path, stages, groups, run_id):
    wf = Workflow(name="outputs", stages=stages, edges=derive_edges(stages))
    store = st.LocalStore(tmp_path / "store")
    units = LocalUnits(backend, store.url, ROOT, timeout_s=60)
    result = execute(wf, plan_of(wf, groups), units, store, workdir=tmp_path / "u", run_id=run_id)
    return result, store


def test_an_output_that_cannot_be_serialised_fails_its_stage_and_stores_nothing(tmp_path, backend):
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    stages = [
        stage(faulty_app.make, bindings={"n": Const(value=3)}),
        stage(
            faulty_app.unpicklable,
            bindings={"x": Item(stage="make"), "ctl": Const(value=str(ctl))},
            parallelism=3,
        ),
    ]
    with pytest.raises(RunFailed) as info:
        _run(backend, tmp_path, stages, [["make"], ["unpicklable"]], "unser")
    error = info.value.error  # the first of the three instances to fail
    assert error["stage"] == "unpicklable" and error["instance"] in (0, 1, 2)
    assert error["type"] == "StoreError"
    i = error["instance"]
    assert f"the output of stage 'unpicklable' instance {i} cannot be serialised" in str(info.value)
    store = st.LocalStore(tmp_path / "store")
    assert store.list("runs/unser/unpicklable") == []  # no partial output
    assert temp_files(store.root) == []


def test_outputs_over_the_response_limit_go_through_the_store(tmp_path, backend):
    """A stage returns 10 MB (the sync response limit is 6 MB): the run works, the
    value travels by reference, and every response stays small."""
    stages = [
        stage(faulty_app.big, bindings={"n": Const(value=7), "mb": Const(value=10)}),
        stage(faulty_app.size_of, bindings={"blob": Output(stage="big")}),
    ]
    for groups in ([["big"], ["size_of"]], [["big", "size_of"]]):
        result, _ = _run(backend, tmp_path, stages, groups, f"big{len(groups)}")
        assert result.outputs["size_of"] == {"bytes": 10 << 20, "first": 7, "last": 7}
        for call in result.calls:
            response = len(json.dumps(call.invoked.payload))
            assert response < 64 * 1024 + 4096 < MAX_SYNC_RESPONSE_BYTES
        if len(groups) == 2:  # big's own unit exports it: by reference, not inline
            (out,) = next(c for c in result.calls if c.unit == "big").invoked.payload["outputs"]
            assert out["bytes"] > 10 << 20 and "value" not in out


def test_user_defined_types_cross_processes(tmp_path, backend):
    """A task returns an instance of a class of the user's file: the unit that reads it (in
    another file) and the orchestrator (which never imported the user's code) load it."""
    from .faulty import other_app

    stages = [
        stage(faulty_app.make, bindings={"n": Const(value=4)}),
        stage(faulty_app.crunch, bindings={"v": Item(stage="make")}, parallelism=4),
        stage(faulty_app.summarise, bindings={"values": Collect(stage="crunch")}),
        stage(other_app.describe, bindings={"summary": Output(stage="summarise")}),
        stage(other_app.passthrough, bindings={"summary": Output(stage="summarise")}),
    ]
    groups = [["make"], ["crunch"], ["summarise"], ["describe"], ["passthrough"]]
    result, _ = _run(backend, tmp_path, stages, groups, "types")
    values = [faulty_app.crunch(v) for v in range(4)]
    assert result.outputs["describe"] == f"{sum(values)} over 4"
    back = result.outputs["passthrough"]
    assert type(back).__name__ == "Summary" and (back.total, back.count) == (sum(values), 4)


def test_what_a_failing_task_prints_is_not_needed_to_find_it(tmp_path):
    """The error of a task names the task's own frame in its traceback (no log digging)."""
    from wisefuse_plugins.runtime.backends.inprocess import InProcessBackend

    ctl = tmp_path / "ctl"
    ctl.mkdir()
    (ctl / "always-2").write_text("raise")
    wf = fault_workflow(ctl, n=4, retries=0)
    store = st.LocalStore(tmp_path / "store")
    with pytest.raises(RunFailed) as info:
        execute(
            wf,
            plan_of(wf, *PLANS["single"]),
            InProcessBackend(store, ROOT),
            store,
            workdir=tmp_path / "u",
        )
    trace = info.value.error["traceback"]
    assert 'faulty_app.py", line' in trace and "in work" in trace
    assert trace.rstrip().endswith("ValueError: injected failure for input 2")
    assert textwrap.dedent(info.value.hint or "").startswith("see .error['traceback']")
