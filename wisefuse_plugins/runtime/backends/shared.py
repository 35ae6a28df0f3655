"""The process-wide local Lambdas the Airflow hook and the Prefect block share.

Warm workers outlive one DAG run or flow run only if the engine does, so both integrations
keep their :class:`~wisefuse_plugins.runtime.backends.local.LocalLambda` for the process.
Each distinct set of options gets its own engine: a caller asking for other options gets
exactly those (never a Lambda silently created with the first caller's), and callers that
ask alike share warm workers. Framework-free: the providers hold only what is theirs
(their units caches).
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wisefuse_plugins.runtime.backends.local import LocalLambda

OptionsKey = tuple[tuple[str, Hashable], ...]

_lock = threading.RLock()
_lambdas: dict[OptionsKey, LocalLambda] = {}
_on_close: list[Callable[[], None]] = []


def options_key(options: dict[str, Any]) -> OptionsKey:
    """The options as a hashable key (lists become tuples, so ``["a"]`` and ``("a",)`` match)."""
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items()))


def shared_local_lambda(**options: Any) -> LocalLambda:
    """The process's local Lambda built with exactly ``options`` (created on first request)."""
    from wisefuse_plugins.runtime.backends.local import LocalLambda

    key = options_key(options)
    with _lock:
        lam = _lambdas.get(key)
        if lam is None:
            lam = _lambdas[key] = LocalLambda(**dict(key))
        return lam


def existing_local_lambdas() -> list[LocalLambda]:
    """The local Lambdas created so far in this process (none are started by asking)."""
    with _lock:
        return list(_lambdas.values())


def on_close(callback: Callable[[], None]) -> None:
    """Call ``callback`` (e.g. to drop caches bound to the engines) whenever they are closed."""
    with _lock:
        if callback not in _on_close:
            _on_close.append(callback)


def close_shared_local_lambdas() -> None:
    """Stop every shared local Lambda (workers and cgroups); the next request starts anew."""
    with _lock:
        lams = list(_lambdas.values())
        _lambdas.clear()
        callbacks = list(_on_close)
    for callback in callbacks:  # outside the lock: callers hold theirs while asking for one
        callback()
    for lam in lams:
        lam.close()


atexit.register(close_shared_local_lambdas)
