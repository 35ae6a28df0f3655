"""The local Lambda service, driven by boto3's own Lambda client (issue 21, item 1)."""

from __future__ import annotations

import base64
import io
import json
import os
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

boto3 = pytest.importorskip("boto3")

from wisefuse_plugins.errors import WiseFuseError  # noqa: E402
from wisefuse_plugins.runtime.backends.service import Handle, serve  # noqa: E402

HANDLER = """
import os, pathlib

def handle(event, context):
    print("hello from", os.environ["AWS_LAMBDA_FUNCTION_NAME"])
    if event.get("write"):
        pathlib.Path(event["write"]).write_text("done")
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {"version": VERSION, "env": {k: os.environ.get(k) for k in event.get("env", [])}}
"""


def zip_of(version: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", f"VERSION = {version}\n" + HANDLER)
    return buf.getvalue()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Handle]:
    handle = serve(port=0, root=tmp_path / "svc")
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def client(service: Handle) -> Any:
    from botocore.config import Config

    return boto3.client(
        "lambda",
        endpoint_url=service.url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"total_max_attempts": 1}, read_timeout=60),
    )


def create(client: Any, name: str = "fn", **extra: Any) -> dict[str, Any]:
    return client.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role="arn:aws:iam::000000000000:role/x",
        Handler="app.handle",
        Code={"ZipFile": zip_of(1)},
        MemorySize=256,
        Timeout=10,
        Architectures=["x86_64"],
        Tags={"wisefuse:unit": "u1"},
        **extra,
    )


def invoke(client: Any, name: str, event: dict[str, Any], **kw: Any) -> tuple[dict[str, Any], Any]:
    response = client.invoke(
        FunctionName=name, Payload=json.dumps(event).encode(), LogType="Tail", **kw
    )
    return response, json.loads(response["Payload"].read())


def test_deploy_update_version_alias_and_invoke(client: Any, tmp_path: Path) -> None:
    created = create(client, Environment={"Variables": {"CONFIGURED": "yes"}})
    assert created["State"] == "Active" and created["MemorySize"] == 256
    client.get_waiter("function_active_v2").wait(FunctionName="fn")
    conf = client.get_function_configuration(FunctionName="fn")
    assert conf["Handler"] == "app.handle" and conf["Environment"]["Variables"] == {
        "CONFIGURED": "yes"
    }
    assert client.get_function(FunctionName="fn")["Tags"] == {"wisefuse:unit": "u1"}

    v1 = client.publish_version(FunctionName="fn", CodeSha256=conf["CodeSha256"])
    assert v1["Version"] == "1"
    client.create_alias(FunctionName="fn", Name="live", FunctionVersion="1")

    updated = client.update_function_code(FunctionName="fn", ZipFile=zip_of(2))
    assert updated["CodeSha256"] != conf["CodeSha256"]
    client.get_waiter("function_updated_v2").wait(FunctionName="fn")
    client.update_function_configuration(FunctionName="fn", MemorySize=512, Timeout=20)
    assert client.get_function_configuration(FunctionName="fn")["MemorySize"] == 512
    v2 = client.publish_version(FunctionName="fn")
    assert v2["Version"] == "2"

    response, body = invoke(client, "fn", {}, Qualifier="live")
    assert body["version"] == 1 and response["ExecutedVersion"] == "1"
    log = base64.b64decode(response["LogResult"]).decode()
    assert "hello from" in log and log.startswith("START RequestId: ") and "Version: 1" in log
    report = log.strip().splitlines()[-1]
    assert report.startswith("REPORT RequestId:") and "Memory Size: 256 MB" in report

    client.update_alias(FunctionName="fn", Name="live", FunctionVersion="2")
    assert client.get_alias(FunctionName="fn", Name="live")["FunctionVersion"] == "2"
    response, body = invoke(client, "fn:live", {})
    assert body["version"] == 2 and response["ExecutedVersion"] == "2"
    assert "Memory Size: 512 MB" in base64.b64decode(response["LogResult"]).decode()
    assert [f["FunctionName"] for f in client.list_functions()["Functions"]] == ["fn"]


def test_async_errors_and_missing(
    client: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    create(client)
    target = tmp_path / "written"
    response = client.invoke(
        FunctionName="fn", InvocationType="Event", Payload=json.dumps({"write": str(target)})
    )
    assert response["StatusCode"] == 202
    deadline = time.monotonic() + 30
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert target.read_text() == "done"

    with caplog.at_level("WARNING", logger="wisefuse_plugins.runtime.backends.service"):
        client.invoke(FunctionName="fn", InvocationType="Event", Payload=b'{"fail": true}')
        deadline = time.monotonic() + 30
        while "asked to fail" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
    assert "async invocation of fn:$LATEST raised ValueError: asked to fail" in caplog.text

    response, body = invoke(client, "fn", {"fail": True})
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "ValueError" and body["errorMessage"] == "asked to fail"
    assert isinstance(body["stackTrace"], list)

    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="nope", Payload=b"{}")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_function_configuration(FunctionName="nope")
    with pytest.raises(client.exceptions.ResourceConflictException):
        create(client)
    with pytest.raises(client.exceptions.InvalidParameterValueException):
        client.update_function_configuration(
            FunctionName="fn", Environment={"Variables": {"AWS_LAMBDA_FUNCTION_NAME": "x"}}
        )
    client.delete_function(FunctionName="fn")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_function(FunctionName="fn")


def test_only_configured_environment(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WISEFUSE_CANARY_HOST", "leaked")  # set after the service started, too
    os.environ["WISEFUSE_CANARY_HOST"] = "leaked"
    create(client, Environment={"Variables": {"CONFIGURED": "yes"}})
    _, body = invoke(client, "fn", {"env": ["WISEFUSE_CANARY_HOST", "CONFIGURED"]})
    assert body["env"] == {"WISEFUSE_CANARY_HOST": None, "CONFIGURED": "yes"}


def test_root_is_owned_by_one_service(service: Handle) -> None:
    with pytest.raises(WiseFuseError, match="owns"):
        serve(port=0, root=service.service.root)
    other = service.service.root.parent / "other"
    with pytest.raises(WiseFuseError, match="cannot listen"):
        serve(port=service.port, root=other)
    assert not (other / "service.pid").exists()


def test_the_aws_backend_runs_a_plan_on_the_service(
    service: Handle, aws_env: str, tmp_path: Path
) -> None:
    """AwsLambdaBackend, unchanged, deploys and invokes through the service (S3: moto)."""
    from botocore.config import Config

    from wisefuse_plugins.runtime.backends.aws import AwsLambdaBackend
    from wisefuse_plugins.runtime.executor import execute
    from wisefuse_plugins.runtime.s3store import S3Store

    from .toyflows import PLANS, ROOT, plan, toy_workflow

    s3 = boto3.client("s3", region_name="us-east-1")
    bucket = f"wf-{os.urandom(6).hex()}"
    s3.create_bucket(Bucket=bucket)
    store = S3Store(bucket, "data")

    def clients(name: str) -> Any:
        assert name == "lambda"
        config = Config(retries={"total_max_attempts": 1}, read_timeout=120)
        return boto3.client("lambda", endpoint_url=service.url, config=config)

    backend = AwsLambdaBackend(
        role_arn="arn:aws:iam::000000000000:role/x",
        store_url=store.url,
        prefix="svc",
        code_root=ROOT,
        plan_hash="abc123",
        # the function's S3 client reaches moto only through its configuration
        environment={
            "AWS_ENDPOINT_URL": aws_env,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        },
        client_factory=clients,
    )
    wf = toy_workflow()
    p = plan(wf, *PLANS["chain-fused"])
    result = execute(wf, p, backend, store, workdir=tmp_path / "units", run_id="r1")
    assert result.outputs and result.cost_usd > 0
    assert all(c.invoked.billed_ms > 0 and c.invoked.log_tail for c in result.calls)
    invoked = [c for c in backend.calls if c[0] == "create_function"]
    assert invoked and all(name.startswith("svc-") for _, name in invoked)
    functions = {f["FunctionName"] for f in service.service.list_functions()["Functions"]}
    assert functions == {backend.function_name(u.id) for u in p.units}
    lam = clients("lambda")
    for unit in p.units:
        alias = lam.get_alias(FunctionName=backend.function_name(unit.id), Name="plan-abc123")
        assert alias["FunctionVersion"] == "1"
