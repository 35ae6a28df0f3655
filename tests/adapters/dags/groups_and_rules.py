"""Task groups (flattened), a mapped task group (opaque), trigger rules, setup/teardown."""

from __future__ import annotations

from airflow.sdk import TaskGroup, dag, task, task_group


@task
def start() -> int:
    return 1


@task
def double(x: int) -> int:
    return 2 * x


@task
def finish() -> None:
    return None


@task
def tally(values: list[int]) -> int:
    return sum(values)


@task(trigger_rule="all_done")
def always(x: int) -> int:
    return x


@task
def create() -> None:
    return None


@task
def work() -> None:
    return None


@task
def drop() -> None:
    return None


@dag(dag_id="task_group", schedule=None)
def groups() -> None:
    s = start()
    with TaskGroup("prep"):
        d = double(s)
        d2 = double(d)
    d2 >> finish()


@dag(dag_id="mapped_task_group", schedule=None)
def mapped_group() -> None:
    @task_group
    def twice(x: int) -> int:
        return double(double(x))

    tally(twice.expand(x=[1, 2]))


@dag(dag_id="trigger_rule", schedule=None)
def rules() -> None:
    always(start())


@dag(dag_id="setup_teardown", schedule=None)
def setup_teardown() -> None:
    c = create().as_setup()
    d = drop().as_teardown(setups=c)
    c >> work() >> d


groups()
mapped_group()
rules()
setup_teardown()
