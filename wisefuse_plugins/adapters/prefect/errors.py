"""The Prefect adapter's error, and the check that Prefect is installed.

Separate so that every step of the adapter (loading, tracing, history) raises the same
error type and names the same missing extra, without importing one another.
"""

from __future__ import annotations

import importlib.util

from wisefuse_plugins.errors import MissingExtraError, WiseFuseError

FEATURE = "the Prefect adapter"


class PrefectAdapterError(WiseFuseError):
    """A flow cannot be loaded, traced or rebuilt from history."""


def require_prefect() -> None:
    """Refuse, naming the ``prefect`` extra, when Prefect is not installed."""
    if importlib.util.find_spec("prefect") is None:
        raise MissingExtraError("prefect", "prefect", FEATURE)
