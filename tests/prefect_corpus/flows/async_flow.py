"""An async flow awaiting async tasks: traced and planned sync flows only, so it runs as it
is, with the reason."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from prefect import flow, task


@task
async def load(path: str) -> list[int]:
    await asyncio.sleep(0)
    return json.loads(Path(path).read_text())


@task
async def total(values: list[int]) -> int:
    return sum(values)


@flow
async def async_flow(path: str) -> int:
    values = await load(path)
    return await total(values)
