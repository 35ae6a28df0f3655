"""A flow whose run fails: tracing it must say so, not return half a graph."""

from __future__ import annotations

from prefect import flow, task


@task
def explode() -> int:
    raise RuntimeError("boom")


@flow(name="failing")
def failing() -> int:
    return explode()
