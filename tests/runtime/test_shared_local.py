"""The process-wide local Lambdas: each request gets exactly the options it asked for."""

from __future__ import annotations

from wisefuse_plugins.runtime.backends import shared


def test_same_options_share_other_options_get_their_own() -> None:
    try:
        a = shared.shared_local_lambda(concurrency_limit=3, preload=())
        assert shared.shared_local_lambda(preload=[], concurrency_limit=3) is a
        b = shared.shared_local_lambda(concurrency_limit=5, preload=())
        assert b is not a
        assert (a.concurrency_limit, b.concurrency_limit) == (3, 5)  # never the first's options
    finally:
        shared.close_shared_local_lambdas()
    assert shared.existing_local_lambdas() == []


def test_close_calls_the_callbacks_and_starts_anew() -> None:
    dropped: list[int] = []
    shared.on_close(lambda: dropped.append(1))
    try:
        first = shared.shared_local_lambda(concurrency_limit=2)
        shared.close_shared_local_lambdas()
        assert dropped
        assert shared.shared_local_lambda(concurrency_limit=2) is not first
    finally:
        shared.close_shared_local_lambdas()
