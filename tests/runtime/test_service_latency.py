"""A warm Invoke through the local Lambda service costs milliseconds, not a delayed ACK."""

from __future__ import annotations

import io
import statistics
import time
import zipfile
from pathlib import Path

import pytest

boto3 = pytest.importorskip("boto3")

from wisefuse_plugins.runtime.backends.service import serve  # noqa: E402


def test_a_warm_invoke_does_not_wait_for_a_delayed_ack(tmp_path: Path) -> None:
    """The service answers in two writes (headers, body): with Nagle's algorithm on its
    socket the body waited for the client's delayed ACK, ~40 ms per warm call (2 ms
    without). The bound sits well below that floor and well above a loaded host's figure."""
    from botocore.config import Config

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", "def handle(event, context):\n    return None\n")
    with serve(port=0, root=tmp_path / "svc") as handle:
        lam = boto3.client(
            "lambda",
            endpoint_url=handle.url,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
            config=Config(retries={"total_max_attempts": 1}),
        )
        lam.create_function(
            FunctionName="noop",
            Runtime="python3.11",
            Role="arn:aws:iam::000000000000:role/x",
            Handler="app.handle",
            Code={"ZipFile": buf.getvalue()},
            MemorySize=1769,
            Timeout=30,
        )
        lam.invoke(FunctionName="noop", Payload=b"{}")  # the cold start
        times = []
        for _ in range(15):
            t0 = time.perf_counter()
            lam.invoke(FunctionName="noop", Payload=b"{}", LogType="Tail")["Payload"].read()
            times.append((time.perf_counter() - t0) * 1000)
    assert statistics.median(times) < 25, sorted(times)
