"""``wisefuse lambda serve|status|stop``: the local Lambda service run by hand."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("boto3")


def wisefuse(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wisefuse_plugins", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_serve_status_stop(tmp_path: Path) -> None:
    from wisefuse_plugins.runtime.backends.service import ondemand
    from wisefuse_plugins.runtime.backends.service.client import lambda_client

    env = {**os.environ, "WISEFUSE_HOME": str(tmp_path / "home")}
    root = tmp_path / "home" / "lambda-service"
    proc = subprocess.Popen(
        [sys.executable, "-m", "wisefuse_plugins", "lambda", "serve", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # "Lambda API at http://127.0.0.1:PORT (root ...)"
        assert line.startswith("Lambda API at http://127.0.0.1:"), line
        url = line.split()[3]
        assert lambda_client(url).list_functions()["Functions"] == []
        status = wisefuse("lambda", "status", env=env)
        assert status.returncode == 0 and url in status.stdout, status.stdout
        # a second service on the same root is refused, saying who owns it
        again = wisefuse("lambda", "serve", "--port", "0", env=env)
        assert again.returncode == 2 and "another Lambda service" in again.stderr
        stop = wisefuse("lambda", "stop", "--root", str(root), env=env)
        assert "stopped 1" in stop.stdout
        assert proc.wait(timeout=30) == 0
        assert ondemand.owner(root) is None and not ondemand.ping(url, timeout_s=1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_refuses_a_taken_port(tmp_path: Path) -> None:
    import socket

    env = {**os.environ, "WISEFUSE_HOME": str(tmp_path / "home")}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        t0 = time.monotonic()
        taken = wisefuse("lambda", "serve", "--port", str(port), env=env)
    assert taken.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in taken.stderr
    assert "pick another --port" in taken.stderr and time.monotonic() - t0 < 60
