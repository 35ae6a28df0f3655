"""The Airflow provider: registration, ``@task.wisefuse_lambda``, the operator's contract, the hook.

The operator tests call ``execute`` with a stand-in task instance (XCom in a dict), so they
need neither a database nor a scheduler; the decorator runs for real with ``dag.test()``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from wisefuse_plugins.ir import (
    Collect,
    Const,
    Item,
    Output,
    Stage,
    StageKind,
    Workflow,
    callable_ref,
    derive_edges,
)
from wisefuse_plugins.plan.schema import Plan, Unit, hashes_of

pytestmark = pytest.mark.airflow

UNIT_APP = '''
"""Functions for the operator tests."""


def make(n):
    return list(range(n))


def square(x):
    return x * x


def total(values, base):
    return {"sum": sum(values) + base["offset"], "n": len(values)}


def boom(x):
    if x == 2:
        raise ValueError(f"cannot take {x}")
    return x
'''

DECORATED_DAG = '''
"""A DAG written for Lambda from the start, with @task.wisefuse_lambda."""

from __future__ import annotations

from airflow.sdk import dag, task


@task.wisefuse_lambda(memory_mb=1024)
def double(x: int) -> int:
    return 2 * x


@task.wisefuse_lambda(memory_mb=1024, arch="arm64")
def stats(values: list[int], offset: int = 0) -> dict[str, int]:
    return {"total": sum(values) + offset, "count": len(values)}


@task
def report(total: int, count: int) -> str:
    return f"{count} values, total {total}"


@dag(dag_id="decorated", schedule=None)
def decorated():
    doubled = double.expand(x=[1, 2, 3])
    summary = stats(doubled, offset=1)
    report(summary["total"], summary["count"])


decorated()
'''


@pytest.fixture(scope="module")
def wisefuse_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from wisefuse_plugins.providers.airflow.hooks import close_local

    home = tmp_path_factory.mktemp("wisefuse-home")
    saved = {
        k: os.environ.get(k)
        for k in (
            "WISEFUSE_HOME",
            "WISEFUSE_STORE",
            "WISEFUSE_DB_URL",
            "WISEFUSE_LOCAL_CONCURRENCY",
        )
    }
    os.environ["WISEFUSE_HOME"] = str(home)
    os.environ["WISEFUSE_LOCAL_CONCURRENCY"] = "8"
    for k in ("WISEFUSE_STORE", "WISEFUSE_DB_URL"):
        os.environ.pop(k, None)
    close_local()
    yield home
    close_local()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@contextmanager
def dags_folder(folder: Path) -> Iterator[None]:
    import airflow.settings

    old, old_env = airflow.settings.DAGS_FOLDER, os.environ.get("AIRFLOW__CORE__DAGS_FOLDER")
    airflow.settings.DAGS_FOLDER = str(folder)
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(folder)
    try:
        yield
    finally:
        airflow.settings.DAGS_FOLDER = old
        if old_env is None:
            os.environ.pop("AIRFLOW__CORE__DAGS_FOLDER", None)
        else:
            os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = old_env


# --------------------------------------------------------------------------- registration


def test_provider_info_names_the_distribution() -> None:
    from importlib.metadata import entry_points, version

    from wisefuse_plugins.providers.airflow import get_provider_info

    info = get_provider_info()
    assert info["package-name"] == "wisefuse-plugins"
    assert info["versions"] == [version("wisefuse-plugins")]
    (ep,) = [
        e
        for e in entry_points(group="apache_airflow_provider")
        if e.dist.name == "wisefuse-plugins"
    ]
    assert ep.load() is get_provider_info
    (decorator,) = info["task-decorators"]
    assert decorator["name"] == "wisefuse_lambda"
    module, _, name = decorator["class-name"].rpartition(".")
    __import__(module)
    assert callable(getattr(sys.modules[module], name))


def test_airflow_providers_list_shows_the_provider(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(tmp_path / "home"), AIRFLOW__CORE__LOAD_EXAMPLES="False")
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "list", "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    listed = json.loads(result.stdout[result.stdout.index("[") :])
    ours = [p for p in listed if p["package_name"] == "wisefuse-plugins"]
    assert ours and ours[0]["description"].startswith("Run Airflow tasks")


# --------------------------------------------------------------------------- the decorator


def test_task_decorator_runs_on_lambda(
    airflow_home: Path, wisefuse_env: Path, tmp_path: Path
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    (tmp_path / "decorated.py").write_text(DECORATED_DAG)
    with dags_folder(tmp_path):
        bag = DagBag(dag_folder=str(tmp_path))
        assert bag.import_errors == {}
        dag = bag.dags["decorated"]
        assert type(dag.task_dict["stats"]).__name__ == "WiseFuseLambdaDecoratedOperator"
        dag_run = dag.test()
    tis = {(ti.task_id, ti.map_index): ti for ti in dag_run.get_task_instances()}
    assert dag_run.state == "success", {k: ti.state for k, ti in tis.items()}
    doubled = [tis["double", i].xcom_pull(task_ids="double", map_indexes=i) for i in range(3)]
    assert doubled == [2, 4, 6]
    assert tis["stats", -1].xcom_pull(task_ids="stats") == {"total": 13, "count": 3}
    assert tis["stats", -1].xcom_pull(task_ids="stats", key="total") == 13  # multiple_outputs
    assert tis["report", -1].xcom_pull(task_ids="report") == "3 values, total 13"


def uses_context(x: int, ti: Any = None) -> int:
    return x


def test_task_decorator_refuses_what_lambda_cannot_run() -> None:
    from airflow.sdk import DAG, task

    with DAG("refused"):
        with pytest.raises(TypeError, match="Airflow context"):
            task.wisefuse_lambda(uses_context)(1)
        with pytest.raises(TypeError, match="module-level"):
            task.wisefuse_lambda(lambda x: x)(1)


# --------------------------------------------------------------------------- the operator


class FakeTI:
    """Just enough of a task instance: XCom in a dict keyed by (task, key, map index),
    shared by the task instances of one run (what one pushes, the next ones pull)."""

    def __init__(
        self,
        xcom: dict[tuple[str, str, int], Any] | None = None,
        task_id: str = "t",
        map_index: int = -1,
    ) -> None:
        self.xcom = xcom if xcom is not None else {}
        self.pushed: dict[str, Any] = {}
        self.dag_id, self.task_id, self.map_index, self.try_number = "units", task_id, map_index, 1

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value
        self.xcom[self.task_id, key, self.map_index] = value

    def xcom_pull(self, task_ids: Any, key: str = "return_value", **_: Any) -> Any:
        if isinstance(task_ids, list):  # every map index of every task, as Airflow does
            found = sorted(
                (task_ids.index(t), m, v)
                for (t, k, m), v in self.xcom.items()
                if t in task_ids and k == key
            )
            return [v for *_, v in found]
        return self.xcom.get((task_ids, key, -1))


def context(ti: FakeTI, run_id: str) -> dict[str, Any]:
    return {"ti": ti, "dag_run": SimpleNamespace(run_id=run_id)}


@pytest.fixture
def app(tmp_path: Path, wisefuse_env: Path) -> SimpleNamespace:
    """A code root with plain functions, imported the way the runtime imports user code."""
    import importlib.util

    root = tmp_path / "code"
    root.mkdir()
    (root / "units_app.py").write_text(textwrap.dedent(UNIT_APP))
    spec = importlib.util.spec_from_file_location("units_app_for_tests", root / "units_app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return SimpleNamespace(root=root, m=module)


def toy(app: SimpleNamespace, middle: str = "square") -> Workflow:
    """settings (opaque) -> make -> square|boom (mapped) -> total (gather, reads settings too)."""

    def stage(name: str, **kw: Any) -> Stage:
        return Stage(id=name, callable=callable_ref(getattr(app.m, name), app.root), **kw)

    stages = [
        Stage(
            id="settings", kind=StageKind.OPAQUE, opaque_reason="BashOperator: runs a shell command"
        ),
        stage("make", bindings={"n": Const(value=5)}),
        stage(middle, bindings={"x": Item(stage="make")}, parallelism=5),
        stage(
            "total", bindings={"values": Collect(stage=middle), "base": Output(stage="settings")}
        ),
    ]
    return Workflow(name="units", stages=stages, edges=derive_edges(stages))


def toy_plan(wf: Workflow, middle: str = "square") -> Plan:
    units = [
        Unit(id="make", stages=["make"]),
        Unit(id=middle, stages=[middle], bundle_size=2),
        Unit(id="total", stages=["total"]),
    ]
    return Plan(workflow=wf.name, units=units, code_hashes=hashes_of(wf))


def operators(app: SimpleNamespace, wf: Workflow, plan: Plan, **kw: Any) -> dict[str, Any]:
    from airflow.sdk import DAG

    from wisefuse_plugins.providers.airflow.layout import layout
    from wisefuse_plugins.providers.airflow.operators import WiseFuseLambdaOperator

    ops = {}
    lay = layout(wf, plan)
    with DAG("units"):
        for u in lay.units:
            ops[u.unit.id] = WiseFuseLambdaOperator(
                task_id=u.task_id,
                unit_id=u.unit.id,
                unit_spec=u.spec,
                code_root=app.root,
                stage_tasks=u.stage_tasks,
                opaque_inputs={k: v.to_json() for k, v in u.opaque_inputs.items()},
                instances=[0, 1] if u.bundled else None,
                **kw,
            )
        tasks = {op.task_id: op for op in ops.values()}
        for a, b in lay.edges:  # between unit tasks: where they pull values passed by value
            if a in tasks and b in tasks:
                tasks[a] >> tasks[b]
    return ops


def test_operator_pushes_values_and_chunks(app: SimpleNamespace, tmp_path: Path) -> None:
    from wisefuse_plugins.profiles.archive import Archive
    from wisefuse_plugins.providers.airflow.hooks import WiseFuseLambdaHook
    from wisefuse_plugins.providers.airflow.layout import count_key
    from wisefuse_plugins.providers.airflow.operators import VALUES_KEY, store_run_id

    wf = toy(app)
    db = f"sqlite:///{tmp_path / 'profiles.sqlite'}"
    ops = operators(app, wf, toy_plan(wf), archive=db)
    run = "manual__2025-01-01T00:00:00+00:00"
    xcom: dict[tuple[str, str, int], Any] = {("settings", "return_value", -1): {"offset": 100}}
    ti = FakeTI(xcom, "make")
    assert ops["make"].execute(context(ti, run)) == [0, 1, 2, 3, 4]
    assert set(ti.pushed) == {count_key("square"), VALUES_KEY}
    assert ti.pushed[count_key("square")] == 5
    assert ti.pushed[VALUES_KEY]["counts"] == {"make": 5}  # the list 'square' maps over
    chunk_values = []
    for m, chunk in enumerate(([0, 1], [2, 3], [4])):
        ops["square"].instances = chunk
        chunk_values.append(ops["square"].execute(context(FakeTI(xcom, "square", m), run)))
    assert chunk_values == [[0, 1], [4, 9], [16]]
    # the opaque 'settings' value is copied from XCom into the store for 'total'; the
    # values of 'make' and 'square' came by value, through XCom: the store holds no copy
    out = ops["total"].execute(context(FakeTI(xcom, "total"), run))
    assert out == {"sum": 0 + 1 + 4 + 9 + 16 + 100, "n": 5}
    store = WiseFuseLambdaHook().get_store()
    keys = store.list(f"runs/{store_run_id('units', run)}")
    assert [k.rsplit("/", 2)[-2] for k in keys] == ["settings"]
    with Archive(db) as archive:
        samples = archive.samples("units")
    assert {s.stage for s in samples} == {"make", "square", "total"}
    assert all(s.source == "airflow" and s.backend == "local" for s in samples)
    assert sorted(s.instance for s in samples if s.stage == "square") == [0, 1, 2, 3, 4]


def test_operator_raises_with_stage_instance_and_traceback(app: SimpleNamespace) -> None:
    from airflow.sdk.exceptions import AirflowException

    wf = toy(app, middle="boom")
    ops = operators(app, wf, toy_plan(wf, middle="boom"))
    run = "manual__2025-02-02T00:00:00+00:00"
    xcom: dict[tuple[str, str, int], Any] = {}
    ops["make"].execute(context(FakeTI(xcom, "make"), run))
    ops["boom"].instances = [2, 3]
    with pytest.raises(AirflowException) as err:
        ops["boom"].execute(context(FakeTI(xcom, "boom", 1), run))
    text = str(err.value)
    assert "stage 'boom'" in text and "instance 2" in text
    assert "ValueError: cannot take 2" in text and "Traceback" in text and "units_app.py" in text


def test_values_passed_by_value_reach_xcom_exactly(tmp_path: Path) -> None:
    """A record with a pickle has no store object: its value comes from the pickle (a tuple
    stays a tuple); what goes on downstream is the pickles and the counts."""
    from wisefuse_plugins.providers.airflow.operators import output_values, passed_on
    from wisefuse_plugins.runtime import passing
    from wisefuse_plugins.runtime import store as st

    def rec(stage: str, instance: int | None, value: Any, **extra: Any) -> dict[str, Any]:
        pickle = passing.encode(st.dumps(value, stage))
        key = st.output_key("r", stage, instance)
        return {"stage": stage, "instance": instance, "key": key, "pickle": pickle, **extra}

    payload = {
        "outputs": [
            rec("pair", None, (1, 2)),
            rec("parts", None, ["a", "b", "c"], count=3),
            rec("each", 1, {1: "one"}),
            rec("each", 0, {0: "zero"}),
        ]
    }
    empty = st.LocalStore(tmp_path / "store")
    got = output_values(payload, empty, ["pair", "parts", "each"])
    assert got == {"pair": (1, 2), "parts": ["a", "b", "c"], "each": [{0: "zero"}, {1: "one"}]}
    assert type(got["pair"]) is tuple
    passed = passed_on(payload)
    assert passed["counts"] == {"parts": 3, "each": 2}
    assert [o["key"] for o in passed["outputs"]] == [r["key"] for r in payload["outputs"]]


def test_store_run_ids_are_safe_and_distinct() -> None:
    from wisefuse_plugins.providers.airflow.operators import store_run_id
    from wisefuse_plugins.runtime.store import check_key

    a = store_run_id("etl", "manual__2025-01-01T00:00:00+00:00")
    b = store_run_id("etl", "manual__2025-01-01T00:00:00.00:00")
    c = store_run_id("etl2", "manual__2025-01-01T00:00:00+00:00")
    assert len({a, b, c}) == 3
    assert all(check_key(x) == x and "/" not in x and len(x) <= 128 for x in (a, b, c))
    assert store_run_id("../x", "..") != "" and check_key(store_run_id("../x", ".."))


# --------------------------------------------------------------------------- the hook


def test_hook_builds_the_aws_backend_from_a_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    from wisefuse_plugins.errors import WiseFuseError
    from wisefuse_plugins.providers.airflow.hooks import WiseFuseLambdaHook

    extra = {
        "region_name": "eu-west-1",
        "endpoint_url": "http://127.0.0.1:9",
        "wisefuse_execution_role_arn": "arn:aws:iam::123456789012:role/fn",
        "wisefuse_store": "s3://bucket/prefix",
    }
    conn = {"conn_type": "aws", "login": "AKIDCONN", "password": "secret-in-conn", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_WF_TEST", json.dumps(conn))
    monkeypatch.delenv("WISEFUSE_STORE", raising=False)
    hook = WiseFuseLambdaHook(backend="aws", aws_conn_id="wf_test")
    assert hook.store_url == "s3://bucket/prefix"
    backend = hook._aws_backend()
    assert backend.role_arn == extra["wisefuse_execution_role_arn"]
    client = backend.client
    assert client.meta.endpoint_url == extra["endpoint_url"]
    assert client.meta.region_name == "eu-west-1"
    assert client._request_signer._credentials.access_key == "AKIDCONN"
    assert hook.get_store().client.meta.endpoint_url == extra["endpoint_url"]
    with pytest.raises(WiseFuseError, match="S3 store"):
        WiseFuseLambdaHook(backend="aws", store="/tmp/local").store_url  # noqa: B018
    with pytest.raises(WiseFuseError, match="unknown wisefuse backend"):
        WiseFuseLambdaHook(backend="gcp")  # type: ignore[arg-type]


def test_hook_local_store_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from wisefuse_plugins.providers.airflow.hooks import WiseFuseLambdaHook

    monkeypatch.delenv("WISEFUSE_STORE", raising=False)
    monkeypatch.setenv("WISEFUSE_HOME", str(tmp_path))
    assert WiseFuseLambdaHook().store_url == str(tmp_path / "store")
    monkeypatch.setenv("WISEFUSE_STORE", str(tmp_path / "elsewhere"))
    assert WiseFuseLambdaHook().store_url == str(tmp_path / "elsewhere")
    assert WiseFuseLambdaHook(store="file:///x").store_url == "file:///x"


def test_hook_deploys_to_aws_with_the_connection(
    app: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Against a moto server: the unit's function is created from the connection's
    credentials and endpoint, with the unit's memory and architecture; deploying again
    changes nothing."""
    from moto.server import ThreadedMotoServer

    from wisefuse_plugins.providers.airflow.hooks import WiseFuseLambdaHook
    from wisefuse_plugins.providers.airflow.layout import layout

    for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    nowhere = tmp_path / "no-aws-config"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(nowhere))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(nowhere))
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        extra = {
            "region_name": "us-east-1",
            "endpoint_url": f"http://{host}:{port}",
            "wisefuse_execution_role_arn": "arn:aws:iam::123456789012:role/wisefuse-fn",
            "wisefuse_store": "s3://wisefuse-bucket/runs",
        }
        conn = {"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra}
        monkeypatch.setenv("AIRFLOW_CONN_WF_MOTO", json.dumps(conn))
        wf = toy(app)
        unit = layout(wf, toy_plan(wf)).unit_task("make")
        hook = WiseFuseLambdaHook(backend="aws", aws_conn_id="wf_moto", function_prefix="wft")
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "lambda.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        hook._aws_client("iam").create_role(
            RoleName="wisefuse-fn", AssumeRolePolicyDocument=json.dumps(trust)
        )
        deployed = hook.deploy(unit.spec, memory_mb=2048, arch="arm64", code_root=app.root)
        client = hook._aws_client("lambda")
        config = client.get_function_configuration(FunctionName=f"wft-{deployed.function}")
        assert (config["MemorySize"], config["Architectures"]) == (2048, ["arm64"])
        assert config["Environment"]["Variables"]["WISEFUSE_STORE"] == extra["wisefuse_store"]
        before = list(hook._aws_backend().calls)
        assert hook.deploy(unit.spec, memory_mb=2048, arch="arm64", code_root=app.root) == deployed
        assert hook._aws_backend().calls == before  # nothing to change
    finally:
        server.stop()
