"""Tasks that use Prefect itself: what a Lambda unit supports, and what it refuses.

Supported: the run logger and ``print`` (with ``log_prints=True``), whose lines reach the
task run's log. Refused, each for its reason: the run context (``prefect.runtime``, read
directly, through ``import prefect`` or in a helper; ``TaskRunContext``), Prefect's API
(``get_client``, ``Variable``, artifacts) and state hooks (``on_completion``,
``retry_condition_fn``).
"""

from __future__ import annotations

import prefect
from prefect import flow, get_client, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.context import TaskRunContext
from prefect.runtime import flow_run
from prefect.variables import Variable


@task
def logs(x: int) -> int:
    logger = get_run_logger()
    logger.info("logs got %d", x)
    logger.warning("logs warns about %d", x)
    return x + 1


@task(log_prints=True)
def prints(x: int) -> int:
    print(f"prints got {x}")
    return x * 2


@task
def run_name(x: int) -> str:
    return f"{flow_run.name}:{x}"


@task
def task_run_inside(x: int) -> str:
    from prefect.runtime import task_run

    return f"{task_run.name}:{x}"


def _flow_run_id() -> str:
    return str(prefect.runtime.flow_run.id)


@task
def through_helper(x: int) -> str:
    return f"{_flow_run_id()}:{x}"


@task
def client(x: int) -> int:
    with get_client(sync_client=True):
        return x


@task
def context(x: int) -> int:
    return x if TaskRunContext.get() is not None else -x


@task
def variable(x: int) -> int:
    return x + int(Variable.get("wisefuse_test_offset", default="1"))


@task
def artifact(x: int) -> int:
    create_markdown_artifact(markdown=f"# {x}", key="wisefuse-test")
    return x


def _done(task, run, state) -> None:
    print(f"done {run.name}")


@task(on_completion=[_done])
def hooked(x: int) -> int:
    return x


@task(retries=1, retry_condition_fn=lambda task, run, state: True)
def conditional_retry(x: int) -> int:
    return x


@flow(name="uses-prefect")
def uses_prefect(x: int = 3) -> list:
    return [
        logs(x),
        prints(x),
        run_name(x),
        task_run_inside(x),
        through_helper(x),
        client(x),
        context(x),
        variable(x),
        artifact(x),
        hooked(x),
        conditional_retry(x),
    ]


@flow(name="logs-and-prints")
def logs_and_prints(x: int = 3) -> int:
    return prints(logs(x))


@flow(name="reads-run-name")
def reads_run_name(x: int = 3) -> str:
    return run_name(logs(x))
