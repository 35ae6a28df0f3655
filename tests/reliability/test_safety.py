"""Safety: what an invocation may import, where the store may write, where credentials go.

- The runtime imports only the callables a unit spec (written at deploy time) names, from
  ``.py`` files inside the code root, and only functions defined in those files: an event
  cannot name code, and a spec pointing outside the root (``..``, an absolute path, a
  symlink, a non-Python file, a name reached through the module's imports) is refused
  before anything of it runs.
- The store never writes outside its root: traversal in run ids, stage ids or keys, and
  symlinks out of the root, are refused.
- Credentials never appear in what wisefuse prints, logs or writes: plans, specs, IR,
  emitted state machines, deployed function configurations and packages, run outputs.
"""

from __future__ import annotations

import io
import json
import logging
import os
import zipfile
from pathlib import Path

import pytest

from wisefuse_plugins.ir import CallableRef, IRError, Stage, Workflow, code_hash, dump
from wisefuse_plugins.plan.schema import dump_plan
from wisefuse_plugins.runtime import store as st
from wisefuse_plugins.runtime.executor import execute, prepare
from wisefuse_plugins.runtime.handler import handler, run_unit
from wisefuse_plugins.runtime.loader import CodeLoadError, load_callable
from wisefuse_plugins.runtime.spec import read_spec, write_spec

from .conftest import REGION
from .faulty import faulty_app
from .harness import PLANS, ROOT, fault_workflow, plan_of

# --------------------------------------------------------------------------- imports

EVIL = """
import pathlib
pathlib.Path({marker!r}).write_text("imported")

def work(x, ctl):
    return -1
"""


@pytest.fixture
def evil(tmp_path) -> tuple[Path, Path]:
    """A module outside the code root that leaves a marker file if it is ever imported."""
    outside = tmp_path / "outside"
    outside.mkdir()
    marker = tmp_path / "IMPORTED"
    (outside / "evil.py").write_text(EVIL.format(marker=str(marker)))
    return outside / "evil.py", marker


def _ref(path: str, qualname: str = "work", fn=faulty_app.work) -> CallableRef:
    return CallableRef(path=path, qualname=qualname, code_hash=code_hash(fn))


def test_specs_pointing_outside_the_code_root_are_refused(tmp_path, evil):
    evil_file, marker = evil
    root = tmp_path / "code"
    root.mkdir()
    (root / "faulty_app.py").write_text(Path(faulty_app.__file__).read_text())
    (root / "link.py").symlink_to(evil_file)  # inside by name, outside in fact
    (root / "data.txt").write_text("def work(x, ctl):\n    return -1\n")
    for path in ("../outside/evil.py", str(evil_file), "link.py", "data.txt"):
        with pytest.raises(CodeLoadError) as info:
            load_callable(_ref(path), root)
        assert "is not a Python file inside the code root" in str(info.value), path
        assert info.value.hint == "plans may only reference the user's own source files"
    # names that reach through the module's own imports into other modules' code
    import subprocess

    # (with the right code hash of subprocess.run: the hash check alone would not stop it)
    for qualname, fn in (("subprocess.run", subprocess.run), ("time.sleep", faulty_app.work)):
        with pytest.raises(CodeLoadError, match=r"is not a function defined in faulty_app\.py"):
            load_callable(_ref("faulty_app.py", qualname, fn), root)
    with pytest.raises(CodeLoadError, match="has no attribute"):
        load_callable(_ref("faulty_app.py", "no_such_function"), root)
    assert load_callable(_ref("faulty_app.py"), root)(3, str(tmp_path)) == 10  # the real one
    assert not marker.exists()  # the module outside the root never ran


def test_an_event_cannot_name_code(tmp_path, evil, monkeypatch):
    """Every field an attacker could add to an event is ignored or rejected; the unit runs
    the function its deployed spec names, and the marker module never runs."""
    evil_file, marker = evil
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    wf = fault_workflow(ctl, n=2)
    specs = prepare(wf, plan_of(wf, *PLANS["single"]), tmp_path / "units")
    store = st.LocalStore(tmp_path / "store")
    st.put(store, "runs/r1/make/e1.pkl", 1, "element")
    monkeypatch.setenv("WISEFUSE_UNIT_SPEC", str(specs["work"]))
    monkeypatch.setenv("WISEFUSE_CODE_ROOT", str(ROOT))
    monkeypatch.setenv("WISEFUSE_STORE", store.url)
    hostile = {
        "run_id": "r1",
        "instances": [1],
        "counts": {"make": 2},
        "handler": f"{evil_file}:work",
        "module": "evil",
        "callable": {"path": str(evil_file), "qualname": "work"},
        "spec": {"stages": [{"id": "work", "callable": {"path": str(evil_file)}}]},
        "code_root": str(evil_file.parent),
        "WISEFUSE_CODE_ROOT": str(evil_file.parent),
    }
    answer = handler(hostile, None)
    assert answer["ok"], answer.get("error")
    assert st.get(store, "runs/r1/work/i1.pkl") == 2  # faulty_app.work(1) = 1 * 1 + 1
    assert not marker.exists()
    for bad, reason in [
        ({"run_id": "../../escape", "instances": [0]}, "unsafe store key"),
        ({"run_id": "..", "instances": [0]}, "unsafe store key"),
        ({"run_id": "r1/work", "instances": [0]}, "unsafe run id"),
        ({"run_id": "r1", "instances": ["0; rm -rf /"]}, "instances must be a non-empty list"),
        ({"run_id": "r1", "instances": [0], "counts": {"make": "2"}}, "event.counts"),
        ({"run_id": "r1", "instances": [0], "resume": "yes"}, "event.resume"),
        ("not an object", "event must be a JSON object"),
    ]:
        answer = handler(bad, None)
        assert not answer["ok"] and answer["error"]["stage"] == "<event>"
        assert reason in answer["error"]["message"], answer["error"]["message"]
    assert store.list("runs") == ["runs/r1/make/e1.pkl", "runs/r1/work/i1.pkl"]


def test_a_deployed_spec_outside_the_root_fails_setup_without_running_it(tmp_path, evil):
    _, marker = evil
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    wf = fault_workflow(ctl, n=2)
    specs = prepare(wf, plan_of(wf, *PLANS["single"]), tmp_path / "units")
    spec = read_spec(specs["work"])
    tampered = spec.model_copy(
        update={
            "stages": [spec.stages[0].model_copy(update={"callable": _ref("../outside/evil.py")})]
        }
    )
    write_spec(tampered, specs["work"])
    env = {
        "WISEFUSE_UNIT_SPEC": str(specs["work"]),
        "WISEFUSE_CODE_ROOT": str(tmp_path / "code-root-without-outside"),
        "WISEFUSE_STORE": str(tmp_path / "store"),
    }
    (tmp_path / "code-root-without-outside").mkdir()
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        answer = handler({"run_id": "r1", "instances": [0]}, None)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert not answer["ok"] and answer["error"]["stage"] == "<setup>"
    assert answer["error"]["type"] == "CodeLoadError"
    assert "is not a Python file inside the code root" in answer["error"]["message"]
    assert not marker.exists()


# --------------------------------------------------------------------------- the store

TRAVERSALS = [
    "../x",
    "..",
    "/etc/passwd",
    "runs/../../x",
    "runs/r1/../../../x",
    "runs//x",
    "runs/r1\n/x",
    "runs/.hidden",
    "runs/r1/x\x00",
    "",
    "C:\\x",
]


@pytest.mark.parametrize("key", TRAVERSALS)
def test_the_local_store_refuses_keys_that_leave_its_root(tmp_path, key):
    store = st.LocalStore(tmp_path / "store")
    (tmp_path / "x").write_text("outside the store")
    before = sorted(tmp_path.rglob("*"))
    for op in (
        lambda: store.put_bytes(key, b"x"),
        lambda: store.get_bytes(key),
        lambda: store.exists(key),
        lambda: store.delete_prefix(key),
        lambda: store.sweep_temp(key),
    ):
        with pytest.raises(st.StoreError, match="unsafe store key"):
            op()
    try:  # listing: refused, or read inside the root ("/a/b" is "a/b" of the store)
        listed = store.list(key)
    except st.StoreError:
        listed = []
    assert listed == [] or key == ""
    assert sorted(tmp_path.rglob("*")) == before


def test_run_and_stage_ids_cannot_carry_traversal(tmp_path):
    store = st.LocalStore(tmp_path / "store")
    for run_id in ("../up", "a/b", "r1\n"):
        with pytest.raises(st.StoreError, match="unsafe"):
            st.check_run_id(run_id)
        ctl = tmp_path / "ctl"
        ctl.mkdir(exist_ok=True)
        wf = fault_workflow(ctl, n=2)
        from wisefuse_plugins.runtime.backends.inprocess import InProcessBackend

        with pytest.raises(st.StoreError, match="unsafe"):
            execute(
                wf,
                plan_of(wf, *PLANS["single"]),
                InProcessBackend(store, ROOT),
                store,
                workdir=tmp_path / "units",
                run_id=run_id,
            )
    assert store.list("runs") == []
    for stage_id in ("../x", "a/b", "x\n", ".."):
        with pytest.raises(IRError, match="not a valid Lambda name"):
            Workflow(
                name="w", stages=[Stage(id=stage_id, kind="opaque", opaque_reason="a bash task")]
            )


def test_a_symlink_out_of_the_store_root_is_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    store = st.LocalStore(tmp_path / "store")
    (store.root / "runs").symlink_to(outside, target_is_directory=True)
    with pytest.raises(st.StoreError, match="escapes the store root"):
        store.put_bytes("runs/r1/work/out.pkl", b"data")
    with pytest.raises(st.StoreError, match="escapes the store root"):
        store.list("runs")
    assert list(outside.iterdir()) == []


def test_the_s3_store_refuses_traversal_before_any_request():
    from wisefuse_plugins.runtime.s3store import S3Store

    class Recorder:
        calls: list[str] = []

        def __getattr__(self, name):
            def request(**kw):
                self.calls.append(name)
                raise AssertionError(f"S3 was called: {name}")

            return request

    store = S3Store("bucket", "prefix", client=Recorder())
    for key in ("../x", "/abs", "runs/../../x", "runs/r1\n/x"):
        with pytest.raises(st.StoreError, match="unsafe store key"):
            store.put_bytes(key, b"x")
        with pytest.raises(st.StoreError, match="unsafe store key"):
            store.get_bytes(key)
    with pytest.raises(st.StoreError, match="unsafe store key"):
        S3Store("bucket", "../other-prefix", client=Recorder())
    assert Recorder.calls == []


# --------------------------------------------------------------------------- credentials

ACCESS_KEY = "AKIAWISEFUSE7TESTKEY"
SECRET_KEY = "wfSecret/9x7Q2uLpZr4TestOnlyKeyDoNotUse"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEWisefuseTestSessionToken42"
SECRETS = (ACCESS_KEY, SECRET_KEY, SESSION_TOKEN)


def _leaks(blob: bytes | str) -> list[str]:
    data = blob.encode() if isinstance(blob, str) else blob
    return [s for s in SECRETS if s.encode() in data]


def _files_leaking(folder: Path) -> dict[str, list[str]]:
    found = {}
    for p in folder.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            leaks = _leaks(data)
            if p.suffix == ".zip":
                with zipfile.ZipFile(io.BytesIO(data)) as zf:
                    leaks += [s for name in zf.namelist() for s in _leaks(zf.read(name))]
            if leaks:
                found[str(p)] = leaks
    return found


def test_credentials_never_reach_logs_plans_packages_or_emitted_files(
    tmp_path, aws, bucket, monkeypatch, capsys, caplog, backend
):
    """Fake keys in the environment; deploy against moto, emit, run locally; then search
    everything printed, logged and written (and what AWS was given) for them."""
    import boto3

    from wisefuse_plugins.cli import main
    from wisefuse_plugins.emitters.stepfunctions import to_asl
    from wisefuse_plugins.runtime.backends.units import LocalUnits
    from wisefuse_plugins.runtime.packaging import Packager

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    caplog.set_level(logging.INFO)
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    wf = fault_workflow(ctl, n=4)
    plan = plan_of(wf, *PLANS["bundled"])
    ir_file = dump(wf, tmp_path / "faults.ir.json")
    plan_file = dump_plan(plan, tmp_path / "faults.plan.json")
    iam = boto3.client("iam", region_name=REGION)
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    role = iam.create_role(RoleName="wf-safety", AssumeRolePolicyDocument=json.dumps(trust))
    args = ["deploy", str(ir_file), str(plan_file), "--role", role["Role"]["Arn"]]
    args += ["--store", f"s3://{bucket}/wf", "--prefix", "safe", "--region", REGION]
    args += ["--code-root", str(ROOT)]
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code in (0, None), capsys.readouterr().err
    # what AWS was given: function configurations and the state machine
    lam = boto3.client("lambda", region_name=REGION)
    configs = [
        lam.get_function_configuration(FunctionName=f["FunctionName"])
        for f in lam.list_functions()["Functions"]
        if f["FunctionName"].startswith("safe-")
    ]
    assert len(configs) == 3
    assert not _leaks(json.dumps(configs, default=str))
    sfn = boto3.client("stepfunctions", region_name=REGION)
    machines = [m for m in sfn.list_state_machines()["stateMachines"] if "safe" in m["name"]]
    assert machines
    for m in machines:
        assert not _leaks(
            sfn.describe_state_machine(stateMachineArn=m["stateMachineArn"])["definition"]
        )
    # what the packages hold (the user's code root, with a credentials file in it)
    root = tmp_path / "code"
    root.mkdir()
    (root / "faulty_app.py").write_text(Path(faulty_app.__file__).read_text())
    (root / ".env").write_text(f"AWS_SECRET_ACCESS_KEY={SECRET_KEY}\n")
    (root / "credentials").write_text(f"[default]\naws_access_key_id={ACCESS_KEY}\n")
    (root / "deploy.key").write_text(SESSION_TOKEN)
    package = Packager(root).build({"make": b"{}"})
    (tmp_path / "package.zip").write_bytes(package.data)
    # an emitted state machine
    asl = to_asl(wf, plan, {u.id: f"arn:aws:lambda:{REGION}:0:function:{u.id}" for u in plan.units})
    (tmp_path / "state-machine.asl.json").write_text(json.dumps(asl))
    # a local run: workers get their configuration only, never the keys in our environment
    store = st.LocalStore(tmp_path / "store")
    units = LocalUnits(backend, store.url, ROOT, timeout_s=60)
    result = execute(wf, plan, units, store, workdir=tmp_path / "units", run_id="safe")
    assert result.outputs["total"] == faulty_app.expected_total(4)
    again = backend.invoke("total", {"run_id": "safe", "resume": True})  # its log tail too
    assert again.ok, again.error
    logs = again.logs + json.dumps(again.payload)
    # now search everything
    for key in (".env", "credentials", "deploy.key"):
        assert key not in zipfile.ZipFile(io.BytesIO(package.data)).namelist()
    planted = {str(root / name) for name in (".env", "credentials", "deploy.key")}
    for folder in (tmp_path, ROOT):
        assert set(_files_leaking(folder)) <= planted  # only the user's own secret files
    printed = capsys.readouterr()
    assert not _leaks(printed.out + printed.err + logs)
    assert not _leaks("\n".join(r.getMessage() for r in caplog.records))
    assert not _leaks(json.dumps([c.invoked.payload for c in result.calls], default=str))


def test_archive_urls_hide_their_password(tmp_path):
    from wisefuse_plugins.profiles.archive import Archive, ArchiveError

    with pytest.raises(ArchiveError) as info:
        Archive("postgresql://wisefuse:hunter2-db-pass@127.0.0.1:9/profiles")
    assert "hunter2-db-pass" not in str(info.value) + str(info.value.hint)
    assert "wisefuse:***@127.0.0.1:9" in str(info.value)


def test_run_unit_keeps_outputs_inline_only_within_budget(tmp_path):
    """(Sanity of the safety net above: big values are never echoed into responses/logs.)"""
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    wf = fault_workflow(ctl, n=2)
    from wisefuse_plugins.runtime.handler import LoadedUnit

    specs = prepare(wf, plan_of(wf, *PLANS["single"]), tmp_path / "units")
    spec = read_spec(specs["make"])
    store = st.LocalStore(tmp_path / "store")
    dep = LoadedUnit(spec, ROOT, store, {"make": lambda n, ctl="": ["x" * 100_000] * n})
    answer = run_unit(dep, {"run_id": "big"}, 1769)
    assert answer["ok"] and "value" not in answer["outputs"][0]
    assert len(json.dumps(answer)) < 10_000
