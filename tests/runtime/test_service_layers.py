"""Layers on the local Lambda service, and isolated functions that run from their zip and
layers only (issue 21, items 1 and 3), driven by boto3's own Lambda client."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

boto3 = pytest.importorskip("boto3")

from wisefuse_plugins.runtime import layers  # noqa: E402
from wisefuse_plugins.runtime.backends.service import Handle, serve  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

APP = """
import importlib.util, sys
import pydantic

def handle(event, context):
    return {
        "pydantic": pydantic.__file__,
        "airflow": importlib.util.find_spec("airflow") is not None,
        "boto3": importlib.util.find_spec("boto3") is not None,
        "path": sys.path,
    }
"""


def app_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", APP)
    return buf.getvalue()


@pytest.fixture(scope="module")
def pydantic_layer(tmp_path_factory: pytest.TempPathFactory) -> layers.Layer:
    """pydantic and its dependencies copied from this environment (the host method)."""
    res = layers.resolve([], requirements=["pydantic"])
    return layers.build_layer(res, method="host", cache=tmp_path_factory.mktemp("layers"))


def _client(url: str) -> Any:
    from botocore.config import Config

    return boto3.client(
        "lambda",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"total_max_attempts": 1}, read_timeout=120),
    )


@pytest.fixture(params=[True, False], ids=["isolated", "host"])
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Handle]:
    handle = serve(port=0, root=tmp_path / "svc", isolated=request.param)
    try:
        yield handle
    finally:
        handle.stop()


def create(client: Any, name: str, layer_arns: list[str]) -> dict[str, Any]:
    return client.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role="arn:aws:iam::000000000000:role/x",
        Handler="app.handle",
        Code={"ZipFile": app_zip()},
        MemorySize=256,
        Timeout=60,
        Layers=layer_arns,
    )


def invoke(client: Any, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    response = client.invoke(FunctionName=name, Payload=b"{}")
    return response, json.loads(response["Payload"].read())


def test_layer_versions_publish_get_list(service: Handle, pydantic_layer: layers.Layer) -> None:
    client = _client(service.url)
    data = pydantic_layer.path.read_bytes()
    first = client.publish_layer_version(
        LayerName="deps", Content={"ZipFile": data}, CompatibleArchitectures=["x86_64"]
    )
    assert first["Version"] == 1 and first["LayerVersionArn"].endswith(":layer:deps:1")
    assert first["Content"]["CodeSize"] == len(data)
    second = client.publish_layer_version(LayerName="deps", Content={"ZipFile": data})
    got = client.get_layer_version(LayerName="deps", VersionNumber=1)
    assert got["LayerVersionArn"] == first["LayerVersionArn"]
    assert got["CompatibleArchitectures"] == ["x86_64"]
    listed = client.list_layer_versions(LayerName="deps")["LayerVersions"]
    assert [v["Version"] for v in listed] == [2, 1]
    created = create(client, "fn", [second["LayerVersionArn"]])
    assert created["Layers"] == [{"Arn": second["LayerVersionArn"], "CodeSize": len(data)}]
    with pytest.raises(client.exceptions.InvalidParameterValueException, match="does not exist"):
        create(client, "other", [second["LayerVersionArn"].replace(":2", ":9")])
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_layer_version(LayerName="deps", VersionNumber=7)
    client.delete_layer_version(LayerName="deps", VersionNumber=2)
    assert [
        v["Version"] for v in client.list_layer_versions(LayerName="deps")["LayerVersions"]
    ] == [1]
    _, body = invoke(client, "fn")  # a deleted version still serves the functions using it
    assert "errorType" not in body, body


def test_a_function_imports_from_its_layer(service: Handle, pydantic_layer: layers.Layer) -> None:
    client = _client(service.url)
    arn = client.publish_layer_version(
        LayerName="deps", Content={"ZipFile": pydantic_layer.path.read_bytes()}
    )["LayerVersionArn"]
    create(client, "fn", [arn])
    response, body = invoke(client, "fn")
    assert "FunctionError" not in response, body
    layer_root = str(service.service.root / "layers" / "deps")
    assert body["pydantic"].startswith(layer_root)  # the layer comes before the host
    assert body["boto3"]  # the Lambda runtime's SDK is there, isolated or not
    if service.service.isolated:
        assert body["airflow"] is False  # installed on this host, not in the function
        assert not any("site-packages" in p for p in body["path"] if not p.startswith(layer_root))
    else:
        assert body["airflow"] is True


def test_a_missing_dependency_is_lambdas_import_error(service: Handle) -> None:
    client = _client(service.url)
    create(client, "fn", [])
    response, body = invoke(client, "fn")
    if not service.service.isolated:  # the host's pydantic: why isolation exists
        assert "FunctionError" not in response, body
        return
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.ImportModuleError"
    assert body["errorMessage"] == "Unable to import module 'app': No module named 'pydantic'"


@pytest.fixture(scope="module")
def layer_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One layer cache for the example tests: approx_svd's DAG and flow import the same
    packages (numpy), so the second build is a cache hit."""
    return tmp_path_factory.mktemp("example-layers")


def run_packaged(path: Path, tmp_path: Path, aws_env: str, layer_cache: Path) -> None:
    """``path``'s units, packaged as ``wisefuse package`` does (zip + host layer), run on the
    isolated service through the AWS backend (S3 on moto), give the plain results."""
    from botocore.config import Config

    from examples.apps import svd
    from tests.plans import chains_plan
    from wisefuse_plugins.runtime.artifacts import package_plan, publish_layer
    from wisefuse_plugins.runtime.backends.aws import AwsLambdaBackend
    from wisefuse_plugins.runtime.executor import execute
    from wisefuse_plugins.runtime.observe import observe
    from wisefuse_plugins.runtime.s3store import S3Store
    from wisefuse_plugins.targets import load_workflow

    wf, _ = observe(load_workflow(str(path)))
    plan = chains_plan(wf, memory_mb=1024)
    built = package_plan(wf, plan, tmp_path / "out", method="host", cache=layer_cache)
    layer = built.layers["x86_64"]
    assert "numpy" in layer.sizes
    assert not {"airflow", "prefect"} & {name.split(".")[0] for name in layer.sizes}
    assert [p.name for p in built.extra_roots] == ["examples"]  # imported beside the file

    s3 = boto3.client("s3", region_name="us-east-1")
    bucket = f"wf-{tmp_path.name[-20:].lower().replace('_', '-')}"
    s3.create_bucket(Bucket=bucket)
    store = S3Store(bucket, "data")
    with serve(port=0, root=tmp_path / "svc", isolated=True) as handle:
        lam = _client(handle.url)
        arn = publish_layer(lam, "deps-x86_64", layer)
        assert publish_layer(lam, "deps-x86_64", layer) == arn  # reused
        assert len(lam.list_layer_versions(LayerName="deps-x86_64")["LayerVersions"]) == 1
        backend = AwsLambdaBackend(
            role_arn="arn:aws:iam::000000000000:role/x",
            store_url=store.url,
            prefix="iso",
            code_root=Path(wf.source.root),
            extra_roots=built.extra_roots,
            layers={"x86_64": [arn]},
            environment={
                "AWS_ENDPOINT_URL": aws_env,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
            },
            client_factory=lambda name: boto3.client(
                "lambda",
                endpoint_url=handle.url,
                config=Config(retries={"total_max_attempts": 1}, read_timeout=300),
            ),
        )
        result = execute(wf, plan, backend, store, workdir=tmp_path / "units", run_id="r1")
    failed = [c.invoked.error or c.invoked.payload.get("error") for c in result.calls if not c.ok]
    assert not failed, failed
    sink = next(s.id for s in wf.stages if not wf.successors(s.id))
    got, expected = result.outputs[sink], svd.run(**svd.SIZES["small"])
    assert got.keys() == expected.keys()
    for key, value in expected.items():  # BLAS may sum in another order in this process
        assert got[key] == pytest.approx(value, rel=1e-9), key
    assert all(c.invoked.log_tail for c in result.calls)


@pytest.mark.slow
@pytest.mark.airflow
def test_an_example_dag_runs_from_its_package_where_airflow_is_absent(
    tmp_path: Path, aws_env: str, layer_cache: Path
) -> None:
    """approx_svd's DAG file: its ``from airflow.sdk import dag, task`` meets the shim, since
    Airflow is not importable there."""
    run_packaged(REPO / "airflow" / "approx_svd.py", tmp_path, aws_env, layer_cache)


@pytest.mark.slow
@pytest.mark.prefect
def test_an_example_flow_runs_from_its_package_where_prefect_is_absent(
    tmp_path: Path, aws_env: str, layer_cache: Path, prefect_env: dict[str, str]
) -> None:
    """approx_svd's Prefect flow file: its ``from prefect import flow, task, unmapped`` meets
    the shim, since Prefect is not importable there. Reading the flow traces one run of it
    with Prefect on this host (the session's Prefect server)."""
    run_packaged(REPO / "prefect" / "approx_svd.py", tmp_path, aws_env, layer_cache)
