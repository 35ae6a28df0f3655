"""A Python file with tasks but no flow."""

from prefect import task


@task
def lonely() -> int:
    return 1
