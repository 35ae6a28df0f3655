"""Load: concurrent workflow runs on one local backend, concurrent profile-archive writers.

Every run must complete with the plain Python result and leave every output it made in
the store; every sample written must be in the archive exactly once.
"""

from __future__ import annotations

import pytest

from wisefuse_plugins.runtime import store as st
from wisefuse_plugins.runtime.backends.local import LocalLambda

from .harness import temp_files
from .loadgen import archive_load, run_load


@pytest.mark.slow
def test_concurrent_runs_all_complete_with_the_right_result(tmp_path, backend: LocalLambda):
    store = st.LocalStore(tmp_path / "store")
    result = run_load(backend, store, tmp_path / "work", runs=20, concurrency=6, variants=2)
    assert result.failed == []
    assert (result.completed, result.wrong, result.lost_outputs) == (20, 0, 0)
    assert len(backend.worker_pids()) <= backend.concurrency_limit
    assert temp_files(store.root) == []
    # each run's keys are its own: 20 runs, nothing else under runs/
    assert {k.split("/")[1] for k in store.list("runs")} == {f"load-{i}" for i in range(20)}


@pytest.mark.slow
def test_concurrent_archive_writers_lose_no_sample(tmp_path):
    found = archive_load(
        f"sqlite:///{tmp_path / 'profiles.sqlite'}",
        processes=3,
        threads=2,
        per_writer=200,
        batch=20,
    )
    assert (found.found, found.distinct, found.lost, found.re_added) == (1000, 1000, 0, 0)


def test_the_concurrency_limit_bounds_workers_alive_under_a_burst(tmp_path):
    """A burst of invocations of functions without warm workers while another function's
    worker is idle: the idle one is evicted, never one worker too many (workers being
    started count too)."""
    import threading
    import time

    from wisefuse_plugins.runtime.backends.local import FunctionConfig

    from .harness import ROOT

    with LocalLambda(concurrency_limit=2, keep_alive_s=60) as lam:
        for name in ("a", "b", "c"):
            lam.register(
                FunctionConfig(name=name, handler="handlers.nap", code_dir=str(ROOT), timeout_s=30)
            )
        assert lam.invoke("a", {"s": 0}).ok
        barrier = threading.Barrier(2)

        def burst(name: str) -> None:
            barrier.wait()
            assert lam.invoke(name, {"s": 0.5}).ok

        threads = [threading.Thread(target=burst, args=(n,)) for n in ("b", "c")]
        for t in threads:
            t.start()
        seen = []
        while any(t.is_alive() for t in threads):
            seen.append(len(lam.worker_pids()))
            time.sleep(0.005)
        for t in threads:
            t.join()
        assert max(seen) <= 2 and len(lam.worker_pids()) <= 2
