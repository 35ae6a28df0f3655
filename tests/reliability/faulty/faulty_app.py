"""User code for the reliability tests: a small workflow whose tasks can be made to fail.

Faults are injected from outside through a control folder ``ctl`` (a constant argument of
the tasks): the file ``arm-<x>`` makes the task whose input is ``x`` inject the fault
named in the file, once (the first task to remove the file owns it, so exactly one
attempt fails and the retry runs clean); ``always-<x>`` injects it on every attempt.
Every execution appends a line to ``calls-<x>``, so a test can count how often a task
really ran (a resumed retry must not run a task whose output is already stored).

Only the standard library is imported: a worker's cold start stays short.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
from dataclasses import dataclass


def _record(ctl: str, x: int | str) -> None:
    fd = os.open(os.path.join(ctl, f"calls-{x}"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)


def _fault_for(ctl: str, x: int | str) -> str | None:
    always = os.path.join(ctl, f"always-{x}")
    if os.path.exists(always):
        with open(always) as f:
            return f.read().strip()
    armed = os.path.join(ctl, f"arm-{x}")
    try:
        with open(armed) as f:
            kind = f.read().strip()
        os.unlink(armed)  # only one attempt gets the fault
    except FileNotFoundError:
        return None
    return kind


class _HalfWriter:
    """A file that takes half of what is written to it, then reports a full disk (or the
    process is killed there, as a timeout or the OOM killer would)."""

    def __init__(self, raw, die: bool = False):
        self.raw = raw
        self.die = die

    def write(self, data):
        view = memoryview(data)
        self.raw.write(view[: len(view) // 2])
        self.raw.flush()
        if self.die:
            os.kill(os.getpid(), signal.SIGKILL)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.raw, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.raw.close()


def _fill_disk(after: int = 0, die: bool = False) -> None:
    """The store's write number ``after + 1`` from now gets half its bytes, then ENOSPC
    (a disk filling up under a write). Writes before it go through."""
    real = os.fdopen
    seen = [0]

    def fdopen(fd, *args, **kw):
        if args[:1] == ("wb",) or kw.get("mode") == "wb":
            seen[0] += 1
            if seen[0] > after:
                os.fdopen = real  # one shot
                return _HalfWriter(real(fd, *args, **kw), die)
        return real(fd, *args, **kw)

    os.fdopen = fdopen


def inject(kind: str, ctl: str, x: int | str) -> None:
    """Fail the way ``kind`` says, from inside the worker that runs the task."""
    if kind == "raise":
        raise ValueError(f"injected failure for input {x}")
    if kind == "kill":  # the test SIGKILLs this process once it has written its pid
        with open(os.path.join(ctl, f"victim-{x}"), "w") as f:
            f.write(str(os.getpid()))
        time.sleep(120)
    elif kind == "oom":
        hog = b"x" * (1 << 30)  # 1 GB, touched: far above the unit's memory
        raise AssertionError(f"allocated {len(hog)} bytes without running out of memory")
    elif kind in ("timeout", "timeout-escaped"):  # and start a child that must die too
        # "escaped": the child leaves the worker's process group (only the cgroup has it)
        child = subprocess.Popen(["sleep", "120"], start_new_session=kind != "timeout")
        with open(os.path.join(ctl, f"child-{x}"), "w") as f:
            f.write(str(child.pid))
        time.sleep(120)
    elif kind.startswith("half-write"):  # "half-write" or "half-write-after-K"
        _fill_disk(int(kind.rsplit("-", 1)[1]) if kind != "half-write" else 0)
    elif kind == "kill-in-write":  # killed half-way through writing the output
        _fill_disk(0, die=True)
    elif kind == "exit":
        os._exit(3)
    else:
        raise AssertionError(f"unknown fault {kind!r}")


# --- the workflow: make -> work (mapped) -> total ---------------------------------------


def make(n: int, ctl: str = "") -> list[int]:
    if ctl:
        _record(ctl, "make")
        kind = _fault_for(ctl, "make")
        if kind is not None:
            inject(kind, ctl, "make")
    return list(range(n))


def work(x: int, ctl: str) -> int:
    _record(ctl, x)
    kind = _fault_for(ctl, x)
    if kind is not None:
        inject(kind, ctl, x)
    return x * x + 1


def total(values: list[int]) -> dict:
    return {"sum": sum(values), "n": len(values)}


def expected_total(n: int) -> dict:
    return {"sum": sum(x * x + 1 for x in range(n)), "n": n}


# --- bad outputs -----------------------------------------------------------------------


def unpicklable(x: int, ctl: str):
    _record(ctl, x)
    return lambda: x  # a lambda cannot be pickled


def big(n: int, mb: int = 10) -> bytes:
    """A single output far above Lambda's 6 MB response limit."""
    return bytes([n % 251]) * (mb << 20)


def size_of(blob: bytes) -> dict:
    return {"bytes": len(blob), "first": blob[0], "last": blob[-1]}


# --- load ------------------------------------------------------------------------------


def seeded(n: int, seed: int) -> list[int]:
    return [(seed * 1_000_003 + i * 7919) % 10_007 for i in range(n)]


def crunch(v: int) -> int:
    acc = v
    for _ in range(2000):  # a little CPU per instance
        acc = (acc * 48271 + 11) % 2_147_483_647
    return acc


def checksum(values: list[int], seed: int) -> dict:
    return {"seed": seed, "sum": sum(values) % 1_000_000_007, "n": len(values)}


# --- user-defined types in outputs -----------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """A result type defined in the user's own file (pickled by reference to it)."""

    total: int
    count: int


def summarise(values: list[int]) -> Summary:
    return Summary(sum(values), len(values))
