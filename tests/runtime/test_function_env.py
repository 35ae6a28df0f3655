"""A local function's environment is its configuration, never the caller's (as on Lambda).

A real Lambda function sees its configured ``Environment.Variables`` and what Lambda sets;
the local backend used to copy the caller's whole ``os.environ`` into its fork server and
workers, so under a real Airflow scheduler every unit inherited the task process's
``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=airflow-db-not-allowed:///`` and failed to import its
DAG file (issue 19).
"""

from __future__ import annotations

import os
import textwrap
import uuid
from pathlib import Path

import pytest

from wisefuse_plugins.runtime.backends.local import (
    HOST_VARS,
    RUNTIME_DIR,
    FunctionConfig,
    LocalLambda,
)
from wisefuse_plugins.runtime.compare import differences

REPO = Path(__file__).resolve().parents[2]
HANDLERS = """
import os, pathlib, sys

def environ(event, context):
    home = pathlib.Path(os.environ["HOME"])
    (home / "written-by-the-function").write_text("x")  # the only writable place, as /tmp
    return {"env": dict(os.environ), "path": sys.path}
"""
#: What the backend itself sets in every function (besides HOST_VARS when the host has them).
BACKEND_VARS = {
    "HOME",
    "TMPDIR",
    "PYTHONPATH",
    "PYTHONUNBUFFERED",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
    "WISEFUSE_LOCAL_LAMBDA",
    "_HANDLER",
}


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    d = tmp_path / "code"
    d.mkdir()
    (d / "wf_env.py").write_text(textwrap.dedent(HANDLERS))
    return d


@pytest.mark.parametrize("preload", [(), ("json",)], ids=["spawned", "forked"])
def test_a_function_sees_its_configuration_and_nothing_of_the_callers(
    code_dir: Path, monkeypatch: pytest.MonkeyPatch, preload: tuple[str, ...]
) -> None:
    canary = f"WISEFUSE_CANARY_{uuid.uuid4().hex[:8].upper()}"
    monkeypatch.setenv(canary, "the caller's secret")
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "airflow-db-not-allowed:///")
    monkeypatch.setenv("PYTHONPATH", "/caller/only")
    common = {"COMMON": "all", "SHARED": "common"}
    with LocalLambda(preload=preload, environment=common) as lam:
        lam.register(
            FunctionConfig(
                name="envfn",
                handler="wf_env.environ",
                memory_mb=256,
                timeout_s=30,
                code_dir=str(code_dir),
                env={"OWN": "mine", "SHARED": "the function's", "PYTHONPATH": "/fn/libs"},
            )
        )
        inv = lam.invoke("envfn")
        assert inv.ok, inv.error
        assert (lam.forkserver_pid is not None) == bool(preload)
        env = inv.payload["env"]
        home = Path(env["HOME"])
        private = lam._state.tmpdir
        assert canary not in env
        assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in env
        host = {k for k in HOST_VARS if k in os.environ}
        assert set(env) == BACKEND_VARS | host | {"COMMON", "SHARED", "OWN"}
        assert {k: env[k] for k in host} == {k: os.environ[k] for k in host}
        assert (env["COMMON"], env["SHARED"], env["OWN"]) == ("all", "the function's", "mine")
        # its configured PYTHONPATH first, then the runtime (the caller's is not there)
        assert env["PYTHONPATH"] == f"/fn/libs{os.pathsep}{RUNTIME_DIR}"
        assert "/caller/only" not in inv.payload["path"]
        assert env["AWS_LAMBDA_FUNCTION_NAME"] == "envfn"
        assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
        assert env["LAMBDA_TASK_ROOT"] == str(code_dir)
        assert env["_HANDLER"] == "wf_env.environ"
        # HOME and TMPDIR: a private folder of this backend, not the host's home
        assert env["TMPDIR"] == env["HOME"] and home.is_relative_to(private)
        assert (home / "written-by-the-function").exists()
        assert Path("~").expanduser() != home
    assert not private.exists()  # removed with the backend


def test_reserved_or_malformed_variables_are_refused(code_dir: Path) -> None:
    with pytest.raises(
        ValueError, match="function 'f': environment variable AWS_REGION is reserved"
    ):
        FunctionConfig(name="f", handler="m.h", env={"AWS_REGION": "eu-west-1"})
    with pytest.raises(ValueError, match="LocalLambda: environment variable HOME is reserved"):
        LocalLambda(environment={"HOME": "/root"})
    with pytest.raises(ValueError, match=r"environment variable N must be a string, got 3"):
        FunctionConfig(name="f", handler="m.h", env={"N": 3})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="not an environment variable name: 'A=B'"):
        FunctionConfig(name="f", handler="m.h", env={"A=B": "x"})


@pytest.mark.airflow
@pytest.mark.slow
def test_a_unit_importing_a_dag_file_runs_under_a_task_processs_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bug of issue 19, reproduced: Airflow's task supervisor blocks ORM access in the
    task process; the units it starts import the DAG file (and Airflow) all the same."""
    from wisefuse_plugins.adapters.airflow import workflow_from_file
    from wisefuse_plugins.plan.schema import single_stage_plan
    from wisefuse_plugins.runtime import store as st
    from wisefuse_plugins.runtime.backends.units import LocalUnits, preload_for
    from wisefuse_plugins.runtime.executor import execute
    from wisefuse_plugins.runtime.observe import observe

    wf, expected = observe(workflow_from_file(REPO / "airflow" / "video_analytics.py"))
    # what the task process of a real scheduler has (after this process imported Airflow)
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "airflow-db-not-allowed:///")
    store = st.LocalStore(tmp_path / "store")
    # the worker imports the real Airflow, as units did before the framework shim
    real = {"WISEFUSE_FRAMEWORK_SHIM": "never"}
    # units import the DAG file with stand-ins for Airflow: nothing of it is preloaded
    assert not [m for m in preload_for(wf) if m.split(".")[0] in ("airflow", "prefect")]
    # a fork server that imported Airflow, as the backend's used to
    with LocalLambda(preload=("airflow.sdk",), concurrency_limit=4) as lam:
        root = Path(wf.source.root)
        units = LocalUnits(lam, store.url, root, timeout_s=120, environment=real)
        result = execute(wf, single_stage_plan(wf), units, store, workdir=tmp_path / "units")
        assert lam.preload_fallback is None  # the fork server imported airflow.sdk too
        assert not differences(result.outputs["aggregate"], expected["aggregate"])
        # with the shim (the default), the same
        units = LocalUnits(lam, store.url, root, timeout_s=120)
        assert units.function_env(Path("x.json"))["WISEFUSE_FRAMEWORK_SHIM"] == "always"
        result = execute(wf, single_stage_plan(wf), units, store, workdir=tmp_path / "shim")
        assert not differences(result.outputs["aggregate"], expected["aggregate"])


@pytest.mark.airflow
def test_the_hooks_environment_is_the_functions_on_both_backends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wisefuse_plugins.errors import WiseFuseError
    from wisefuse_plugins.plan.schema import Unit
    from wisefuse_plugins.providers.airflow.hooks import WiseFuseLambdaHook

    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    env = {"GREETING": "hi"}
    hook = WiseFuseLambdaHook(
        backend="aws",
        store="s3://bucket/runs",
        execution_role_arn="arn:aws:iam::000000000000:role/wf",
        region_name="us-east-1",
        environment=env,
    )
    config = hook._aws_backend(tmp_path).desired_configuration(Unit(id="u", stages=["s"]))
    assert config["Environment"]["Variables"]["GREETING"] == "hi"
    local = WiseFuseLambdaHook(environment=env)
    assert local.environment == env
    with pytest.raises(WiseFuseError, match="AWS_LAMBDA_FUNCTION_NAME is reserved"):
        WiseFuseLambdaHook(environment={"AWS_LAMBDA_FUNCTION_NAME": "x"})
