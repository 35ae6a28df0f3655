"""A writer process for the concurrency test: ``python writers.py DB WORKER N START_AT``.

Run as a fresh interpreter (not forked from pytest, whose frameworks' background threads
a fork would copy in an unknown state).
"""

from __future__ import annotations

import sys
import time

from wisefuse_plugins.profiles.archive import Archive, Sample


def write_samples(db: str, worker: int, n: int, start_at: float = 0.0) -> None:
    """``n`` samples, one transaction each: as many lock fights as possible.

    ``start_at`` (a wall-clock time) lines the writers up so that their transactions overlap.
    """
    with Archive(db) as archive:
        time.sleep(max(0.0, start_at - time.time()))
        for i in range(n):
            ref = f"w{worker}-{i}" if i % 2 else None
            archive.add([Sample("wf", "s", "h1", 512, float(i), instance=worker, ref=ref)])


if __name__ == "__main__":
    write_samples(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
