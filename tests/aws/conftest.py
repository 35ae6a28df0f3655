"""A real moto server on a loopback port for the AWS tests; no account, no network.

The server is started once per session; the AWS environment (endpoint, fake
credentials, region) is set only while a test of this folder runs, so nothing else in
the session talks to it by accident. ``MOTO_PORT`` tells moto's Step Functions
interpreter where to send the Lambda calls of a state machine it executes.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator

import pytest

REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def aws_env(moto_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path_factory) -> str:
    """Point boto3 at the moto server with fake credentials, for this test only."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    nowhere = tmp_path_factory.getbasetemp() / "no-aws-config"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(nowhere))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(nowhere))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("MOTO_PORT", moto_server.rsplit(":", 1)[1])
    return moto_server


@pytest.fixture
def client(aws_env: str):
    """``client("s3")``: a boto3 client bound to the moto server."""
    import boto3

    return lambda service: boto3.client(service, region_name=REGION)


@pytest.fixture
def bucket(client) -> str:
    name = f"wf-{uuid.uuid4().hex[:12]}"
    client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture
def role_arn(client) -> str:
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
    name = f"wisefuse-{uuid.uuid4().hex[:8]}"
    role = client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
    return role["Role"]["Arn"]


@pytest.fixture
def prefix() -> str:
    """A function-name prefix of its own per test: the server is shared by the session."""
    return f"t{uuid.uuid4().hex[:6]}"
