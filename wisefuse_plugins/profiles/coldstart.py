"""The runtime's handler with the unit's code loaded at INIT, for profiling.

The runtime handler loads a unit's functions on its first invocation. On the local
backend that first invocation runs under the function's CPU quota, so a stage whose
module imports something heavy (a DAG file importing Airflow) pays seconds of import at
512 MB on every cold start of a profiling setting. Loading at import time moves that
work into INIT, where Lambda (and the local backend) put module-level code: the cold
start is then measured as ``init_ms`` where the model expects it, and profiling a grid
of memory sizes does not spend most of its time importing.
"""

from __future__ import annotations

import contextlib

from wisefuse_plugins.runtime import handler as _runtime

with contextlib.suppress(Exception):  # a broken deployment is reported by the first invocation
    _runtime.deployment()

handler = _runtime.handler
