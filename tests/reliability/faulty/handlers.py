"""Plain Lambda handlers (event, context) for tests of the local backend itself."""

from __future__ import annotations

import time


def nap(event, context):
    time.sleep(event.get("s", 0.1))
    return "ok"
