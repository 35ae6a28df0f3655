"""The AWS Lambda backend against moto: deploy, update only what changed, versions, invoke."""

from __future__ import annotations

import base64
import io
import json
import shutil

import pytest

from wisefuse_plugins.deploy import deploy_plan
from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.ir.names import MAX_NAME_LENGTH
from wisefuse_plugins.plan.limits import MAX_SYNC_REQUEST_BYTES
from wisefuse_plugins.plan.pricing import lambda_cost
from wisefuse_plugins.runtime.backends.aws import (
    AwsError,
    AwsLambdaBackend,
    EventTooLarge,
    default_client_factory,
    function_name,
    parse_report,
)
from wisefuse_plugins.runtime.executor import RunFailed, execute, prepare
from wisefuse_plugins.runtime.s3store import S3Store

from ..runtime.toyflows import PLANS, ROOT, plan, toy_workflow
from .conftest import REGION

REPORT = (
    "START RequestId: 6f1c Version: 1\n"
    "END RequestId: 6f1c\n"
    "REPORT RequestId: 6f1c\tDuration: 1234.56 ms\tBilled Duration: 1235 ms\t"
    "Memory Size: 1769 MB\tMax Memory Used: 312 MB\tInit Duration: 456.78 ms\t\n"
)


def _deploy(wf, p, role_arn, bucket, prefix, **kw):
    return deploy_plan(
        wf,
        p,
        role_arn=role_arn,
        store_url=f"s3://{bucket}/data",
        prefix=prefix,
        region=REGION,
        code_root=ROOT,
        **kw,
    )


def test_functions_get_the_planned_configuration(client, role_arn, bucket, prefix):
    wf = toy_workflow()
    p = plan(wf, *PLANS["bundles-of-2"])
    p = p.model_copy(
        update={
            "units": [
                u.model_copy(update={"memory_mb": 3538, "arch": "arm64"})
                if u.id == "square-middle"
                else u
                for u in p.units
            ]
        }
    )
    result = _deploy(wf, p, role_arn, bucket, prefix, state_machine=False, timeout_s={"total": 60})
    lam = client("lambda")
    conf = lam.get_function_configuration(FunctionName=f"{prefix}-square-middle")
    assert conf["MemorySize"] == 3538 and conf["Architectures"] == ["arm64"]
    assert conf["Timeout"] == 900 and conf["Runtime"] == "python3.11"
    assert conf["Handler"] == "wisefuse_plugins.runtime.handler.handler"
    assert conf["Role"] == role_arn
    assert conf["Environment"]["Variables"] == {
        "WISEFUSE_UNIT_SPEC": "/var/task/wisefuse_units/square-middle.unit.json",
        "WISEFUSE_CODE_ROOT": "/var/task/wisefuse_code",
        "WISEFUSE_STORE": f"s3://{bucket}/data",
    }
    total = lam.get_function_configuration(FunctionName=f"{prefix}-total")
    assert total["Timeout"] == 60 and total["MemorySize"] == 1769
    assert total["Architectures"] == ["x86_64"]
    # one version per function, and the plan alias points at it
    assert result.versions == dict.fromkeys(["make", "square-middle", "config", "total"], "1")
    alias = lam.get_alias(FunctionName=f"{prefix}-make", Name=f"plan-{result.plan_hash}")
    assert alias["FunctionVersion"] == "1"
    assert result.function_arns["make"].endswith(f":function:{prefix}-make:1")
    tags = lam.list_tags(Resource=conf["FunctionArn"])["Tags"]
    assert tags["wisefuse:unit"] == "square-middle" and tags["wisefuse:plan"] == result.plan_hash


@pytest.fixture
def frozen_runtime(tmp_path, monkeypatch):
    """A copy of wisefuse_plugins to package: others may edit the source tree mid-test."""
    from wisefuse_plugins.runtime import packaging

    copy = tmp_path / "frozen" / "wisefuse_plugins"
    shutil.copytree(packaging.runtime_root(), copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(packaging, "runtime_root", lambda: copy)


def test_a_plan_update_changes_only_what_changed(
    client, role_arn, bucket, prefix, tmp_path, frozen_runtime
):
    wf = toy_workflow()
    p = plan(wf, *PLANS["bundles-of-2"])
    first = _deploy(wf, p, role_arn, bucket, prefix, state_machine=False)
    assert all(c.created for c in first.functions.values())
    lam = client("lambda")

    def snapshot():
        return {
            u: {
                k: lam.get_function_configuration(FunctionName=f"{prefix}-{u}")[k]
                for k in ("LastModified", "CodeSha256", "MemorySize")
            }
            for u in first.functions
        }

    before = snapshot()
    # the same plan again: nothing changes, the same versions are reused
    backend = AwsLambdaBackend(
        role_arn=role_arn,
        store_url=f"s3://{bucket}/data",
        prefix=prefix,
        code_root=ROOT,
        client_factory=default_client_factory(REGION),
    )
    specs = prepare(wf, p, tmp_path / "units")
    for u in p.units:
        backend.deploy(u, specs[u.id])
    assert {op for op, _ in backend.calls} == {"publish_version"}
    assert {c.version for c in backend.changes.values()} == {"1"}
    assert snapshot() == before
    # one unit's memory changes: one configuration update, no code upload anywhere
    bigger = p.model_copy(
        update={
            "units": [
                u.model_copy(update={"memory_mb": 2048}) if u.id == "total" else u for u in p.units
            ]
        }
    )
    second = _deploy(wf, bigger, role_arn, bucket, prefix, state_machine=False)
    assert second.changed_units == ["total"]
    assert second.functions["total"].config_updated == ["MemorySize"]
    assert not any(c.code_updated for c in second.functions.values())
    after = snapshot()
    assert after["total"]["MemorySize"] == 2048
    for unit in ("make", "square-middle", "config"):
        assert after[unit] == before[unit], unit
    assert after["total"]["CodeSha256"] == before["total"]["CodeSha256"]
    assert second.versions == {"make": "1", "square-middle": "1", "config": "1", "total": "2"}
    # bundling changes make's spec (it now counts chunks of 5): only make gets new code
    third = _deploy(
        wf, plan(wf, *PLANS["bundles-of-5"]), role_arn, bucket, prefix, state_machine=False
    )
    assert [u for u, c in third.functions.items() if c.code_updated] == ["make"]


def test_layers_are_attached_per_architecture(client, role_arn, bucket, prefix):
    lam = client("lambda")
    arns = {}
    for arch in ("x86_64", "arm64"):
        layer = lam.publish_layer_version(
            LayerName=f"{prefix}-deps-{arch}",
            Content={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
            CompatibleRuntimes=["python3.11"],
            CompatibleArchitectures=[arch],
        )
        arns[arch] = layer["LayerVersionArn"]
    wf = toy_workflow()
    p = plan(wf, *PLANS["chain-fused"])
    p = p.model_copy(
        update={"units": [p.units[0].model_copy(update={"arch": "arm64"}), *p.units[1:]]}
    )
    layers = {arch: [arn] for arch, arn in arns.items()}
    _deploy(wf, p, role_arn, bucket, prefix, state_machine=False, layers=layers)
    first = lam.get_function_configuration(FunctionName=f"{prefix}-{p.units[0].id}")
    other = lam.get_function_configuration(FunctionName=f"{prefix}-{p.units[1].id}")
    assert [x["Arn"] for x in first["Layers"]] == [arns["arm64"]]
    assert [x["Arn"] for x in other["Layers"]] == [arns["x86_64"]]


def test_function_names_are_safe_and_bounded():
    long = "u" * 80
    name = function_name("prefix", long)
    assert len(name) <= MAX_NAME_LENGTH and name.startswith("prefix-u")
    assert function_name("prefix", long + "x") != name
    assert function_name("wf", "etl.extract data") == "wf-etl-extract-data"


def test_report_line_parses():
    report = parse_report(REPORT)
    assert report is not None
    assert (report.duration_ms, report.billed_ms, report.memory_mb) == (1234.56, 1235.0, 1769)
    assert (report.max_memory_mb, report.init_ms, report.request_id) == (312.0, 456.78, "6f1c")
    warm = parse_report("REPORT RequestId: x\tDuration: 3.1 ms\tBilled Duration: 4 ms\t"
                        "Memory Size: 128 MB\tMax Memory Used: 40 MB")  # fmt: skip
    assert warm is not None and warm.init_ms is None
    assert parse_report("START RequestId: x\n") is None


def test_motos_invoke_answer_is_a_failure_never_success(role_arn, bucket, prefix, tmp_path):
    """moto without Docker answers 200 and an error text: that must read as a failure."""
    wf = toy_workflow()
    p = plan(wf, *PLANS["chain-fused"])
    store = S3Store(bucket, "data")
    backend = AwsLambdaBackend(
        role_arn=role_arn,
        store_url=store.url,
        prefix=prefix,
        code_root=ROOT,
        client_factory=default_client_factory(REGION),
    )
    # through the executor (which deploys every unit): the run fails at the first unit
    with pytest.raises(RunFailed) as info:
        execute(wf, p, backend, store, workdir=tmp_path / "units", run_id="r1")
    assert info.value.unit == "make"
    assert all(c.invoked.payload["ok"] is False for c in info.value.calls)
    assert store.list("runs/r1") == []
    # and directly: moto's answer (status 200, FunctionError "Handled", a docker message)
    invoked = backend.invoke("make", {"run_id": "r1"})
    assert invoked.error is not None and invoked.payload["ok"] is False
    assert "docker" in invoked.error["message"]


def test_an_oversized_event_is_refused_before_any_call(role_arn, bucket):
    backend = AwsLambdaBackend(
        role_arn=role_arn,
        store_url=f"s3://{bucket}/x",
        client_factory=default_client_factory(REGION),
    )
    event = {"run_id": "r1", "data": "x" * MAX_SYNC_REQUEST_BYTES}
    with pytest.raises(EventTooLarge, match="synchronous limit") as info:
        backend.invoke("make", event)
    assert "through the store" in (info.value.hint or "")
    assert backend.calls == []


def _stubbed_backend(sleeps: list[float], **kw):
    """A backend whose Lambda client is a botocore Stubber (no server at all)."""
    import boto3
    from botocore.stub import Stubber

    lam = boto3.client("lambda", region_name=REGION)
    stubber = Stubber(lam)
    backend = AwsLambdaBackend(
        role_arn="arn:aws:iam::123456789012:role/r",
        store_url="s3://b/p",
        client_factory=lambda service: lam,
        sleep=sleeps.append,
        jitter=False,
        **kw,
    )
    backend._deployed["make"] = type(
        "D", (), {"name": "wf-make", "version": "3", "memory_mb": 1769, "arch": "arm64"}
    )()
    return backend, stubber


def test_throttling_is_retried_with_exponential_backoff():
    """The Stubber stands in for AWS throttling (HTTP 429), which moto cannot produce."""
    from botocore.response import StreamingBody

    sleeps: list[float] = []
    backend, stubber = _stubbed_backend(sleeps, base_delay_s=0.5)
    expected = {"FunctionName": "wf-make", "Qualifier": "3", "InvocationType": "RequestResponse",
                "LogType": "Tail", "Payload": b'{"run_id":"r1"}'}  # fmt: skip
    for _ in range(3):
        stubber.add_client_error(
            "invoke",
            service_error_code="TooManyRequestsException",
            service_message="Rate Exceeded.",
            http_status_code=429,
            expected_params=expected,
        )
    body = json.dumps({"ok": True, "outputs": []}).encode()
    stubber.add_response(
        "invoke",
        {
            "StatusCode": 200,
            "LogResult": base64.b64encode(REPORT.encode()).decode(),
            "Payload": StreamingBody(io.BytesIO(body), len(body)),
            "ExecutedVersion": "3",
        },
        expected,
    )
    with stubber:
        invoked = backend.invoke("make", {"run_id": "r1"})
    stubber.assert_no_pending_responses()
    assert sleeps == [0.5, 1.0, 2.0] and backend.throttled == 3
    assert invoked.error is None and invoked.payload == {"ok": True, "outputs": []}
    assert (invoked.billed_ms, invoked.init_ms, invoked.cold) == (1235.0, 456.78, True)
    assert invoked.max_memory_mb == 312.0
    assert invoked.cost_usd == pytest.approx(lambda_cost(1235, 1769, "arm64"))


def test_throttling_that_never_ends_is_a_clear_error():
    sleeps: list[float] = []
    backend, stubber = _stubbed_backend(sleeps, max_attempts=3)
    for _ in range(3):
        stubber.add_client_error(
            "invoke", service_error_code="TooManyRequestsException", http_status_code=429
        )
    with stubber, pytest.raises(AwsError) as info:
        backend.invoke("make", {"run_id": "r1"})
    assert info.value.code == "TooManyRequestsException" and len(sleeps) == 2
    assert "concurrency" in (info.value.hint or "")


def test_function_errors_are_failures():
    from botocore.response import StreamingBody

    backend, stubber = _stubbed_backend([])
    body = json.dumps(
        {"errorMessage": "Task timed out after 900.00 seconds", "errorType": "Sandbox.Timedout"}
    ).encode()
    stubber.add_response(
        "invoke",
        {
            "StatusCode": 200,
            "FunctionError": "Unhandled",
            "Payload": StreamingBody(io.BytesIO(body), len(body)),
        },
    )
    with stubber:
        invoked = backend.invoke("make", {"run_id": "r1"})
    assert invoked.payload["ok"] is False
    assert invoked.error == {
        "stage": "<lambda>",
        "instance": None,
        "type": "Sandbox.Timedout",
        "message": "Task timed out after 900.00 seconds",
        "traceback": "",
    }


def test_functions_need_an_s3_store():
    with pytest.raises(WiseFuseError, match="S3 store"):
        AwsLambdaBackend(role_arn="r", store_url="/tmp/store", client_factory=lambda s: None)
