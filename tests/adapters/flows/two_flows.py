"""Two flows in one file: load_flow_file needs a name."""

from __future__ import annotations

from prefect import flow


@flow(name="first")
def first() -> int:
    return 1


@flow(name="second")
def second() -> int:
    return 2
