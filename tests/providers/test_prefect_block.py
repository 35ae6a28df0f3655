"""The ``WiseFuseLambda`` block: registered through the entry point, saved and loaded on the
session's Prefect server, and building the local and AWS backends (AWS against moto)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from wisefuse_plugins.errors import WiseFuseError

pytestmark = pytest.mark.prefect

REGION = "us-east-1"
SECRET = "wJalrXUtnFEMI-not-a-real-secret-0123456789"


def test_entry_point_names_the_module() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="prefect.collections")}
    assert found.get("wisefuse_plugins") == "wisefuse_plugins.providers.prefect"


def test_cli_registers_the_block(prefect_env: dict[str, str]) -> None:
    """``prefect block register -m wisefuse_plugins.providers.prefect`` against the session's server."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, **prefect_env, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    module = "wisefuse_plugins.providers.prefect"
    result = subprocess.run(
        [sys.executable, "-m", "prefect", "block", "register", "-m", module],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WiseFuse Lambda" in result.stdout

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        block_type = client.read_block_type_by_slug("wisefuse-lambda")
    assert block_type.name == "WiseFuse Lambda"


def test_save_and_load_by_slug(prefect_env: dict[str, str]) -> None:
    from prefect.blocks.core import Block
    from prefect_aws import AwsCredentials

    from wisefuse_plugins.prefect import WiseFuseLambda

    name = f"t-{uuid.uuid4().hex[:8]}"
    creds = AwsCredentials(
        aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key=SECRET, region_name=REGION
    )
    block = WiseFuseLambda(
        backend="aws",
        region=REGION,
        function_prefix="etl",
        store_url="s3://bucket/runs",
        aws_credentials=creds,
        execution_role_arn="arn:aws:iam::123456789012:role/wisefuse",
        concurrency_limit=7,
    )
    block.save(name)

    loaded = Block.load(f"wisefuse-lambda/{name}")
    assert isinstance(loaded, WiseFuseLambda)
    assert (loaded.backend, loaded.function_prefix, loaded.concurrency_limit) == ("aws", "etl", 7)
    assert loaded.aws_credentials is not None
    assert loaded.aws_credentials.aws_secret_access_key.get_secret_value() == SECRET
    assert WiseFuseLambda.load(name).store_url == "s3://bucket/runs"
    assert SECRET not in repr(loaded) and SECRET not in str(loaded)


def test_local_backend_and_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wisefuse_plugins.prefect import WiseFuseLambda
    from wisefuse_plugins.providers.prefect.blocks import close_local_lambdas
    from wisefuse_plugins.runtime.backends.service import ondemand
    from wisefuse_plugins.runtime.store import LocalStore

    monkeypatch.setenv("WISEFUSE_HOME", str(tmp_path))
    block = WiseFuseLambda()
    store = block.make_store()
    assert isinstance(store, LocalStore) and store.root == (tmp_path / "store").resolve()
    try:
        backend = block.make_backend(tmp_path, "my flow")
        assert backend.function_name("a-b") == "wisefuse-my-flow-a-b"
        # the local service for the block's options, started on demand, answers at its URL
        root = ondemand.service_root(block._local_options())
        assert ondemand.find(root) == backend.url
        assert block.make_backend(tmp_path, "my flow") is backend  # keeps warm workers
        other = WiseFuseLambda(concurrency_limit=3).make_backend(tmp_path, "my flow")
        assert other.url != backend.url  # other engine options: a service of their own
    finally:
        close_local_lambdas()
    assert ondemand.find(root) is None


def test_aws_settings_are_checked() -> None:
    from wisefuse_plugins.prefect import WiseFuseLambda

    with pytest.raises(WiseFuseError, match="execution_role_arn"):
        WiseFuseLambda(backend="aws", store_url="s3://b/p").make_backend(".", "f")
    with pytest.raises(WiseFuseError, match="store_url"):
        WiseFuseLambda(backend="aws", execution_role_arn="arn:r").make_store()


# --------------------------------------------------------------------------- AWS on moto


@pytest.fixture
def aws(moto_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """moto behind AWS_ENDPOINT_URL; no credentials in the environment: the block brings them."""
    import boto3

    for name in (
        "AWS_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    session = boto3.Session(
        aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key=SECRET, region_name=REGION
    )
    bucket = f"wf-{uuid.uuid4().hex[:10]}"
    session.client("s3").create_bucket(Bucket=bucket)
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
    role = session.client("iam").create_role(
        RoleName=f"wf-{uuid.uuid4().hex[:8]}", AssumeRolePolicyDocument=json.dumps(trust)
    )
    return {"session": session, "bucket": bucket, "role": role["Role"]["Arn"]}


def test_aws_backend_uses_the_credentials_block(aws: dict[str, Any], tmp_path: Path) -> None:
    from prefect_aws import AwsCredentials

    from wisefuse_plugins.ir import Const, Stage, Workflow, callable_ref
    from wisefuse_plugins.plan.schema import single_stage_plan
    from wisefuse_plugins.prefect import WiseFuseLambda
    from wisefuse_plugins.runtime import store as st
    from wisefuse_plugins.runtime.spec import unit_spec, write_spec

    block = WiseFuseLambda(
        backend="aws",
        store_url=f"s3://{aws['bucket']}/runs",
        execution_role_arn=aws["role"],
        function_prefix="wft",
        aws_credentials=AwsCredentials(
            aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key=SECRET, region_name=REGION
        ),
    )
    store = block.make_store()
    assert st.put(store, "runs/r-1/s/out.pkl", {"x": 1}, "test")[0]
    assert st.get(store, "runs/r-1/s/out.pkl") == {"x": 1}

    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text("def double(x):\n    return 2 * x\n", encoding="utf-8")
    sys.path.insert(0, str(code))
    try:
        import app  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(code))
    stage = Stage(
        id="double", callable=callable_ref(app.double, code), bindings={"x": Const(value=3)}
    )
    wf = Workflow(name="doubler", stages=[stage])
    plan = single_stage_plan(wf, memory_mb=512)
    spec_path = write_spec(unit_spec(wf, plan, "double"), tmp_path / "double.unit.json")

    backend = block.make_backend(code, "doubler")
    backend.deploy(plan.units[0], spec_path)
    lam = aws["session"].client("lambda")
    config = lam.get_function_configuration(FunctionName="wft-doubler-double")
    assert config["MemorySize"] == 512 and config["Role"] == aws["role"]
    assert SECRET not in json.dumps(config, default=str)
    assert SECRET not in spec_path.read_text(encoding="utf-8")
