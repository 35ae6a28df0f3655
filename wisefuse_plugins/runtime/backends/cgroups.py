"""Just enough of the cgroup v1 interface to give each worker its own CPU quota and memory limit.

Worker groups are created *inside the cgroup this process is already in* (read from
/proc/self/cgroup), so whatever limits or accounting the host applies to us still apply
to our workers. Every folder is named ``wisefuse-<owner pid>-<pid namespace>-...``: the owner removes
its own, and folders left behind by an owner that died are swept by the next one (in the
same pid namespace: another container's pids mean nothing here).

cgroup v2 (the unified hierarchy) is not handled: :func:`detect` says why it found no
usable controller and the backend falls back to its portable modes.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

PREFIX = "wisefuse-"


@functools.cache
def pid_namespace() -> str:
    """Our pid namespace's inode: a pid is only meaningful inside its namespace."""
    try:
        return os.readlink("/proc/self/ns/pid").split("[")[-1].rstrip("]")
    except OSError:
        return "0"


def group_name(*parts: object) -> str:
    """``wisefuse-<pid>-<pid namespace>-<parts>``: who owns a folder, for the sweep."""
    return "-".join([f"{PREFIX}{os.getpid()}", pid_namespace(), *map(str, parts)])


#: A file a controller must have for us to use it.
_REQUIRED = {"cpu": "cpu.cfs_quota_us", "memory": "memory.limit_in_bytes"}


@dataclass(frozen=True)
class Hierarchy:
    """A writable cgroup v1 controller: ``base`` is where our worker groups go."""

    controller: str
    base: Path


@dataclass(frozen=True)
class Detection:
    hierarchy: Hierarchy | None
    reason: str  # why it is unusable, or where it is


def _v1_mounts() -> dict[str, tuple[Path, str]]:
    """controller -> (mount point, root of the mount inside the hierarchy)."""
    mounts: dict[str, tuple[Path, str]] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fields, extra = pre.split(), post.split()
            if len(extra) < 3 or extra[0] != "cgroup":
                continue
            for opt in extra[2].split(","):
                mounts.setdefault(opt, (Path(fields[4]), fields[3]))
    return mounts


def _own_paths() -> dict[str, str]:
    """controller -> path of this process's cgroup in that hierarchy."""
    paths: dict[str, str] = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for c in controllers.split(","):
                if c:
                    paths[c] = path
    return paths


@functools.cache
def detect(controller: str) -> Detection:
    """Find a cgroup v1 ``controller`` we can create groups in, or the reason we cannot."""
    try:
        mounts, own = _v1_mounts(), _own_paths()
    except OSError as exc:
        return Detection(None, f"cannot read /proc: {exc}")
    if controller not in mounts:
        v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
        return Detection(
            None,
            f"no cgroup v1 '{controller}' hierarchy is mounted"
            + (" (this host uses cgroup v2, which is not supported)" if v2 else ""),
        )
    mount, root = mounts[controller]
    rel = os.path.relpath(own.get(controller, "/"), root)
    if rel.startswith(".."):
        return Detection(None, f"our '{controller}' cgroup is outside the mounted {mount}")
    base = mount if rel == "." else mount / rel
    if not (base / _REQUIRED[controller]).exists():
        return Detection(None, f"{base} lacks {_REQUIRED[controller]}")
    probe = base / group_name("probe")
    try:
        probe.mkdir(exist_ok=True)
        probe.rmdir()
    except OSError as exc:
        return Detection(None, f"cannot create cgroups under {base}: {exc.strerror} (not root?)")
    return Detection(Hierarchy(controller, base), str(base))


class Cgroup:
    """One cgroup folder we created; :meth:`remove` kills what is left in it and deletes it."""

    def __init__(self, hierarchy: Hierarchy, name: str) -> None:
        self.path = hierarchy.base / name
        self.path.mkdir()

    @property
    def procs_file(self) -> Path:
        return self.path / "cgroup.procs"

    def write(self, name: str, value: int | str) -> None:
        (self.path / name).write_text(str(value))

    def read(self, name: str) -> str:
        return (self.path / name).read_text()

    def read_int(self, name: str, default: int = 0) -> int:
        try:
            return int(self.read(name).split()[0])
        except (OSError, ValueError, IndexError):
            return default

    def read_keyed(self, name: str) -> dict[str, int]:
        """A ``key value`` per line file such as memory.oom_control."""
        out: dict[str, int] = {}
        try:
            for line in self.read(name).splitlines():
                k, _, v = line.partition(" ")
                if v.strip().lstrip("-").isdigit():
                    out[k] = int(v)
        except OSError:
            pass
        return out

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in self.read("cgroup.procs").split()]
        except OSError:
            return []

    def remove(self, timeout_s: float = 5.0) -> bool:
        """Kill remaining processes and rmdir; retries while the kernel still holds it."""
        return _remove(self.path, timeout_s)


def _remove(path: Path, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            pids = (path / "cgroup.procs").read_text().split()
        except OSError:
            pids = []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        try:
            path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                return False
        time.sleep(0.01)


def owner_gone(name: str, prefix: str = PREFIX) -> bool:
    """True if ``<prefix><pid>-<pid namespace>-...`` names a dead process of our namespace."""
    owner, _, rest = name[len(prefix) :].partition("-")
    if not name.startswith(prefix) or rest.split("-", 1)[0] != pid_namespace():
        return False  # not ours, or another container's: its pids mean nothing here
    return owner.isdigit() and int(owner) != os.getpid() and not _alive(int(owner))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(hierarchy: Hierarchy) -> list[Path]:
    """Remove our folders whose owner process is gone (it was killed before it could)."""
    removed = []
    try:
        entries = list(hierarchy.base.iterdir())
    except OSError:
        return removed
    for d in entries:
        if not d.is_dir() or not owner_gone(d.name):
            continue
        if _remove(d, 1.0):
            removed.append(d)
    return removed
