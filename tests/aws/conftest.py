"""The AWS tests run against a real moto server on a loopback port (``moto_server`` and
``aws_env`` in tests/conftest.py): no account, no network. The AWS environment is set
only while a test of this folder runs, so nothing else in the session talks to it by
accident."""

from __future__ import annotations

import json
import uuid

import pytest

REGION = "us-east-1"


@pytest.fixture(autouse=True)
def _aws(aws_env: str, tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> str:
    """Every test of this folder talks to the session's moto server (tests/conftest.py),
    with a throwaway ``$WISEFUSE_HOME`` (deploy caches its dependency layers there)."""
    monkeypatch.setenv("WISEFUSE_HOME", str(tmp_path_factory.mktemp("aws-home")))
    return aws_env


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
