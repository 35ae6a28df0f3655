"""A Lambda handler the benchmarks run on the local backend to see how many cores are free.

Two threads sort the same array (numpy releases the GIL while sorting), first one after
the other, then at the same time, in a worker whose CPU share is the host's cores. The
ratio of the two times is the parallelism this host really gives an invocation now: about
2 on an idle 2-core machine, about 1 when other work keeps one core busy. Kept light: the
worker imports this module at its cold start.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, float]:
    import numpy as np

    data = np.random.default_rng(0).random(int(event.get("n", 1_500_000)))

    def job(_: int) -> None:
        np.sort(data)

    t = time.perf_counter()
    job(0)
    job(1)
    seq = time.perf_counter() - t
    t = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(job, range(2)))
    par = time.perf_counter() - t
    return {"sequential_s": seq, "parallel_s": par}
