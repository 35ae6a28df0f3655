"""A writer process for the concurrency test (a small module: spawned processes import it)."""

from __future__ import annotations

from typing import Any

from wisefuse_plugins.profiles.archive import Archive, Sample


def write_samples(db: str, worker: int, n: int, start: Any = None) -> None:
    """``n`` samples, one transaction each: as many lock fights as possible.

    ``start`` (a barrier) lines the writers up so that their transactions overlap.
    """
    if start is not None:
        start.wait(60)
    with Archive(db) as archive:
        for i in range(n):
            ref = f"w{worker}-{i}" if i % 2 else None
            archive.add([Sample("wf", "s", "h1", 512, float(i), instance=worker, ref=ref)])
