"""The store's key scheme: which key holds which value of a run, and which keys are safe.

Both stores (the local directory, :mod:`.store`, and S3, :mod:`.s3store`) use these keys;
keeping them here lets the S3 store share them without importing the module that opens it.
"""

from __future__ import annotations

import re

from wisefuse_plugins.errors import WiseFuseError

_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class StoreError(WiseFuseError):
    """A key that is unsafe, or a value that is missing or cannot be stored."""


def check_key(key: str) -> str:
    """Return ``key`` if every ``/``-separated segment is a plain name; raise otherwise."""
    parts = key.split("/")
    if not key or any(not _SEGMENT.fullmatch(p) or p in {".", ".."} or ".." in p for p in parts):
        raise StoreError(
            f"unsafe store key {key!r}",
            hint="keys are '/'-separated names of letters, digits, '_', '.', '-' (no '..', no leading '/')",
        )
    return key


def check_run_id(run_id: str) -> str:
    """Return ``run_id`` if it is one plain key segment (a ``/`` would nest one run's keys
    inside another's: run ``r1/work`` would be counted as instances of run r1's ``work``)."""
    check_key(run_id)
    if "/" in run_id:
        raise StoreError(
            f"unsafe run id {run_id!r}: it must not contain '/'",
            hint="run ids are names of letters, digits, '_', '.', '-'",
        )
    return run_id


def output_key(run_id: str, stage: str, instance: int | None = None) -> str:
    part = "out" if instance is None else f"i{instance}"
    return check_key(f"runs/{run_id}/{stage}/{part}.pkl")


def element_key(run_id: str, stage: str, index: int) -> str:
    return check_key(f"runs/{run_id}/{stage}/e{index}.pkl")
