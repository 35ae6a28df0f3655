"""What a unit's functions print and log appears in the log of the Airflow task that ran it.

A DAG whose tasks print and log, rewritten in process (drop-in ``rewrite``) and emitted as a
file, runs with ``dag.test()`` on the local Lambda; ``dag.test()`` writes each task's log to
this process's stdout (Airflow's task logger), where the tests read it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ..airflow_helpers import (
    dags_folder,
    fused_groups,
    make_plan,
    wisefuse_env_fixture,  # noqa: F401  (the wisefuse_env fixture)
    write_app,
)

pytestmark = pytest.mark.airflow

CHATTY = """
from __future__ import annotations

import logging
import sys

from airflow.sdk import TaskGroup, dag, task

log = logging.getLogger(__name__)


@task
def make(n: int) -> list[int]:
    print(f"making {n} numbers")
    return list(range(n))


@task
def shout(x: int) -> int:
    print(f"shout {x}")
    print(f"shout {x} on stderr", file=sys.stderr)
    log.warning("shout warning %d", x)
    return x * 10


@task
def total(xs) -> int:
    log.info("adding %d values", len(xs))
    return sum(xs)


@dag(dag_id="chatty", schedule=None)
def chatty():
    numbers = make(4)
    with TaskGroup("grp"):
        loud = shout.expand(x=numbers)
    total(loud)


dag = chatty()
"""

FAILING = """
from __future__ import annotations

from airflow.sdk import dag, task


@task
def start() -> int:
    return 3


@task
def explode(n: int) -> int:
    print(f"exploding {n}")
    raise ValueError(f"cannot take {n}")


@dag(dag_id="failing", schedule=None)
def failing():
    explode(start())


dag = failing()
"""

DECORATED = """
from __future__ import annotations

import logging

from airflow.sdk import dag, task

log = logging.getLogger(__name__)


@task.wisefuse_lambda(memory_mb=512)
def hello(x: int) -> int:
    print(f"hello {x}")
    log.info("said hello %d", x)
    return x + 1


@task.wisefuse_lambda(memory_mb=512)
def sulk(x: int) -> int:
    print(f"sulking on {x}")
    raise RuntimeError("not today")


@dag(dag_id="decorated_logs", schedule=None)
def decorated_logs():
    sulk(hello(1))


decorated_logs()
"""


def parse(folder: Path):
    from airflow.dag_processing.dagbag import DagBag

    with dags_folder(folder):
        bag = DagBag(dag_folder=str(folder))
    assert bag.import_errors == {}
    return bag


@pytest.fixture(scope="module")
def folder(airflow_home: Path, wisefuse_env: Path, tmp_path_factory: pytest.TempPathFactory):
    """The chatty DAG with a bundled, fused plan (make / grp.shout in bundles of 2 / total)
    and the failing DAG with one unit per task, drop-in and emitted, in one DAG folder."""
    root = tmp_path_factory.mktemp("logs")
    write_app("chatty", root, CHATTY, lambda wf: {"b2": make_plan(wf, fused_groups(wf), 2)})
    write_app("failing", root, FAILING, lambda wf: {"one": make_plan(wf, fused_groups(wf))})
    return root, parse(root)


def task_log(out: str) -> list[str]:
    """The lines the unit tasks wrote into their task logs (Airflow's format, one per line)."""
    return [line for line in out.splitlines() if "airflow.task.operators.wisefuse_plugins" in line]


def message(line: str) -> str:
    """A task log line without its timestamp, level and logger: what the task logged."""
    return re.sub(r"^\S+ \[\w+\s*\] (.*?)\s+\[airflow\.task\.operators\..*$", r"\1", line)


@pytest.mark.parametrize("dag_id", ["chatty__b2", "chatty__emitted_b2"])
def test_every_line_a_unit_printed_is_in_its_task_log(folder, dag_id, capsys) -> None:
    root, bag = folder
    capsys.readouterr()
    with dags_folder(root):
        dag_run = bag.dags[dag_id].test()
    assert dag_run.state == "success"
    tis = {(ti.task_id, ti.map_index): ti for ti in dag_run.get_task_instances()}
    assert tis["total", -1].xcom_pull(task_ids="total") == 60
    lines = [message(line) for line in task_log(capsys.readouterr().out)]
    assert "make stdout | making 4 numbers" in lines
    # the bundled unit's two chunks: each instance's lines, named by stage, task and instance
    for i in range(4):
        where = f"grp-shout (task grp.shout)[{i}]"
        assert f"{where} stdout | shout {i}" in lines
        assert f"{where} stderr | shout {i} on stderr" in lines
        assert f"{where} log | WARNING chatty: shout warning {i}" in lines
    assert "total log | INFO chatty: adding 4 values" in lines
    # then the REPORT-style line of each invocation
    reports = [
        line for line in lines if re.match(r"unit \S+.*: (cold|warm), \d+ ms \(billed", line)
    ]
    assert len(reports) == 1 + 2 + 1  # make, two chunks of grp.shout, total
    first_shout = lines.index("grp-shout (task grp.shout)[0] stdout | shout 0")
    assert any(lines.index(r) > first_shout for r in reports if "instances [0, 1]" in r)


@pytest.mark.parametrize("dag_id", ["failing__one", "failing__emitted_one"])
def test_a_failing_unit_logs_what_it_printed_before_its_error(folder, dag_id, capsys) -> None:
    root, bag = folder
    capsys.readouterr()
    with dags_folder(root):
        dag_run = bag.dags[dag_id].test()
    assert dag_run.state == "failed"
    out = capsys.readouterr().out
    printed = out.index("explode stdout | exploding 3")
    report = out.index("unit start-explode: ", printed)  # start and explode fused
    error = out.index(
        "unit 'start-explode' failed in stage 'explode': ValueError: cannot take 3", report
    )
    assert printed < report < error


def test_the_decorator_logs_its_functions_lines(airflow_home, wisefuse_env, tmp_path, capsys):
    (tmp_path / "decorated_logs.py").write_text(DECORATED)
    bag = parse(tmp_path)
    capsys.readouterr()
    with dags_folder(tmp_path):
        dag_run = bag.dags["decorated_logs"].test()
    assert dag_run.state == "failed"
    tis = {ti.task_id: ti for ti in dag_run.get_task_instances()}
    assert tis["hello"].state == "success" and tis["sulk"].state == "failed"
    out = capsys.readouterr().out
    lines = [message(line) for line in task_log(out)]
    assert "hello stdout | hello 1" in lines
    assert "hello log | INFO decorated_logs: said hello 1" in lines
    assert any(line.startswith("hello on local: ") for line in lines)
    printed = out.index("sulk stdout | sulking on 2")
    assert printed < out.index("sulk on local: ", printed) < out.index("RuntimeError: not today")


TIMED_OUT_TAIL = (
    "START RequestId: 6f1c Version: 3\n"
    "processing chunk 7 of 9\n"
    "2026-12-07T03:00:00.000Z 6f1c Task timed out after 900.00 seconds\n"
    "END RequestId: 6f1c\n"
    "REPORT RequestId: 6f1c\tDuration: 900000.00 ms\tBilled Duration: 900000 ms\t"
    "Memory Size: 1769 MB\tMax Memory Used: 312 MB\tStatus: timeout\n"
)


class TaskLog:
    """Where invoke_logged writes (an operator's ``self.log``): the lines, formatted."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, level: int, msg: str, *args: object) -> None:
        self.lines.append(msg % args)

    def info(self, msg: str, *args: object) -> None:
        self.lines.append(msg % args)

    warning = info


def test_a_unit_that_died_leaves_the_end_of_its_log_in_the_task_log(monkeypatch):
    """On AWS, a function killed by a timeout answers no handler response, so no lines: the
    task log gets the 4 KB tail of the function's log that Lambda returns (``LogType=Tail``),
    before the error. The cloud's answer is stubbed; the rest is the real code path."""
    import base64
    import io
    import json

    import boto3
    from airflow.sdk.exceptions import AirflowException
    from botocore.response import StreamingBody
    from botocore.stub import ANY, Stubber

    from wisefuse_plugins.providers.airflow.hooks import Deployed, WiseFuseLambdaHook
    from wisefuse_plugins.providers.airflow.operators import invoke_logged
    from wisefuse_plugins.runtime.backends.aws import AwsLambdaBackend

    client = boto3.client("lambda", region_name="us-east-1")
    backend = AwsLambdaBackend(
        role_arn="arn:aws:iam::123456789012:role/r",
        store_url="s3://b/p",
        client_factory=lambda service: client,
    )
    body = json.dumps({"errorType": "Sandbox.Timedout", "errorMessage": "timed out"}).encode()
    stubber = Stubber(client)
    stubber.add_response(
        "invoke",
        {
            "StatusCode": 200,
            "FunctionError": "Unhandled",
            "LogResult": base64.b64encode(TIMED_OUT_TAIL.encode()).decode(),
            "Payload": StreamingBody(io.BytesIO(body), len(body)),
        },
        {
            "FunctionName": ANY,
            "InvocationType": "RequestResponse",
            "LogType": "Tail",
            "Payload": ANY,
        },
    )
    monkeypatch.setattr(WiseFuseLambdaHook, "_aws_backend", lambda self, root=None: backend)
    hook = WiseFuseLambdaHook(backend="aws", store="s3://b/p")
    log = TaskLog()
    with stubber, pytest.raises(AirflowException, match=r"Sandbox\.Timedout: timed out"):
        invoke_logged(
            log,
            hook,
            Deployed("make", "sha", "/code"),
            {"run_id": "r1"},
            unit_id="make",
            label="unit make",
            memory_mb=1769,
            stage_tasks={},
        )
    lines = log.lines
    assert "function log | processing chunk 7 of 9" in lines
    timeout = "function log | 2026-12-07T03:00:00.000Z 6f1c Task timed out after 900.00 seconds"
    assert lines.index("function log | processing chunk 7 of 9") < lines.index(timeout)
    assert lines[-1].startswith("unit make: warm, 900000 ms (billed 900000 ms, 1769 MB)")
