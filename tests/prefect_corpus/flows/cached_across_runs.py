"""A load cached by its inputs (``cache_policy=INPUTS``, an expiration) as users cache
expensive reads: a later run with the same path gets the cached list even after the file
changed. A unit would read the file again, so the stage stays opaque (with the reason)
and the flow runs as it is."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import INPUTS


@task(cache_policy=INPUTS, cache_expiration=dt.timedelta(hours=1))
def load(path: str) -> list[int]:
    return json.loads(Path(path).read_text())


@task
def total(values: list[int]) -> int:
    return sum(values)


@flow
def cached_across_runs(path: str) -> int:
    return total(load(path))
