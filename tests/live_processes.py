"""What the live deployments of tests/live (Airflow) and tests/live_prefect (Prefect) share:
a free port, the processes left behind (by pid, found through their environment), and one
bounded wait that fails early if a process of the deployment died."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stray_pids(root: Path) -> list[int]:
    """Live processes (other than this one) whose environment mentions ``root``."""
    needle = str(root).encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            if needle in Path(f"/proc/{entry}/environ").read_bytes():
                state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
                if state not in ("Z", "X"):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def poll(
    done: Callable[[], Any],
    timeout_s: float,
    what: str,
    *,
    check_alive: Callable[[], None],
    tails: Callable[[], str],
    error: type[Exception],
    describe: Callable[[], str] | None = None,
    interval_s: float = 0.5,
) -> Any:
    """Poll ``done()`` until it is truthy (its value); ``check_alive`` raises if a process of
    the deployment died; past ``timeout_s``, ``error`` with what was awaited and the logs."""
    deadline = time.monotonic() + timeout_s
    while True:
        check_alive()
        result = done()
        if result:
            return result
        if time.monotonic() > deadline:
            detail = describe() if describe else ""
            raise error(f"waited {timeout_s:.0f} s for {what}\n{detail}\n{tails()}")
        time.sleep(interval_s)
