"""Fixtures of the reliability tests: a local backend checked for leaks, and a moto server.

``backend`` gives each test its own :class:`LocalLambda` and, once the test is done and
the backend closed, asserts that nothing of it survives: no process started during the
test (workers, the processes tasks started, a fork server), no process anywhere whose
environment points into the test's folder (an orphan adopted by init), no cgroup folder
of ours, no log folder.
"""

from __future__ import annotations

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


@pytest.fixture
def aws(aws_env: str) -> str:
    """boto3 pointed at the session's moto server (tests/conftest.py), for this test only."""
    return aws_env


@pytest.fixture
def bucket(aws: str) -> str:
    import uuid

    import boto3

    name = f"rel-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=name)
    return name
