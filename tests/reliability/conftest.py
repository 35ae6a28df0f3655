"""Fixtures of the reliability tests: a local backend checked for leaks, and a moto server.

``backend`` gives each test its own :class:`LocalLambda` and, once the test is done and
the backend closed, asserts that nothing of it survives: no process started during the
test (workers, the processes tasks started, a fork server), no process anywhere whose
environment points into the test's folder (an orphan adopted by init), no cgroup folder
of ours, no log folder.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from wisefuse_plugins.runtime.backends.local import LocalLambda

from .harness import descendants, own_cgroups, processes_with, wait_until

REGION = "us-east-1"


@pytest.fixture
def backend(tmp_path) -> Iterator[LocalLambda]:
    before_procs = descendants()
    before_groups = set(own_cgroups())
    lam = LocalLambda(keep_alive_s=60, concurrency_limit=4)
    tmpdir = lam._state.tmpdir
    try:
        yield lam
    finally:
        lam.close()
    assert wait_until(lambda: not (descendants() - before_procs)), (
        f"processes left after close: {sorted(descendants() - before_procs)}"
    )
    assert wait_until(lambda: not processes_with(tmp_path)), sorted(processes_with(tmp_path))
    assert set(own_cgroups()) <= before_groups
    assert not tmpdir.exists()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws(moto_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path_factory) -> str:
    """boto3 pointed at the moto server, with fake credentials, for this test only."""
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
def bucket(aws: str) -> str:
    import uuid

    import boto3

    name = f"rel-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=name)
    return name
