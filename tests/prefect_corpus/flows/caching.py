"""Caching within a run: the default cache policy (keyed by the run id too) and NO_CACHE.

Neither reuses a result of an earlier run, so units that compute every result again
return what the flow returns (``cached_across_runs.py`` is the other case)."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import DEFAULT, NO_CACHE


@task(cache_policy=NO_CACHE)
def load(path: str) -> list[int]:
    return json.loads(Path(path).read_text())


@task(cache_policy=DEFAULT, persist_result=True)
def cubes(values: list[int]) -> list[int]:
    return [v**3 for v in values]


@task(refresh_cache=True, persist_result=True)
def total(values: list[int]) -> int:
    return sum(values)


@flow
def caching(path: str) -> int:
    return total(cubes(load(path)))
