"""The long tail of what DAG files do at import time (tests/runtime/test_shim.py imports it
under the framework shim): every import style, decorator flavour, operator, dependency
form and constant a DAG file may use; the asserts are what the stand-ins must give."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

import airflow.utils.dates
from airflow import DAG as DAG2
from airflow.decorators import dag, task, task_group
from airflow.exceptions import AirflowFailException, AirflowSkipException
from airflow.models import BaseOperator
from airflow.models.baseoperator import chain, cross_downstream
from airflow.models.param import Param
from airflow.operators.python import BranchPythonOperator, PythonOperator
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.sensors.time_delta import TimeDeltaSensor
from airflow.sdk import Asset, Label, ObjectStoragePath, TriggerRule, XComArg, get_parsing_context
from airflow.sdk.definitions.xcom_arg import XComArg as XComArg2
from airflow.utils import timezone
from airflow.utils.task_group import TaskGroup
from airflow.utils.trigger_rule import TriggerRule as TR2

if TYPE_CHECKING:
    from airflow.sdk import Context

START = timezone.datetime(2024, 1, 1)
assert START.tzinfo is not None and TriggerRule.ALL_DONE == "all_done" == TR2.ALL_DONE
assert airflow.utils.dates.days_ago(1) < timezone.utcnow()
assert get_parsing_context().dag_id is None
DEFAULTS = {"retries": 2, "retry_delay": datetime.timedelta(minutes=1)}
BASE = ObjectStoragePath("s3://bucket/prefix") / "file.csv"
RAW = Asset("s3://bucket/raw")


class CopyOperator(BaseOperator):
    template_fields = ("src",)

    def __init__(self, src: str, **kwargs):
        super().__init__(**kwargs)
        self.src = src

    def execute(self, context: Context) -> str:
        return S3Hook().read_key(self.src)


def plain(x: int) -> int:
    return x + 1


def choose() -> str:
    return "a"


@task
def extract(n: int) -> list[int]:
    return list(range(n))


@task(multiple_outputs=True, retries=3, trigger_rule=TriggerRule.ALL_DONE)
def stats(values: list[int]) -> dict:
    return {"n": len(values), "sum": sum(values)}


@task.bash
def echo(word: str) -> str:
    return f"echo {word}"


@task.virtualenv(requirements=["numpy"], system_site_packages=False)
def in_venv(x: int) -> int:
    return x * 2


@task.branch
def pick() -> str:
    return "a"


@task.short_circuit
def go() -> bool:
    return True


@task.run_if(lambda context: True)
@task
def conditional(x: int) -> int:
    return x


@task_group
def group(values):
    return stats(values)


@dag(
    dag_id="tail",
    schedule=None,
    start_date=START,
    default_args=DEFAULTS,
    params={"n": Param(5, type="integer", minimum=1)},
    tags=["x"],
)
def tail_dag():
    values = extract(4)
    s = stats(values)
    in_venv.expand(x=values) >> s
    echo.override(task_id="echo2")("hi") >> Label("then") >> pick()
    group.expand(values=[values])
    conditional.partial().expand(x=values)
    s["sum"] >> go()


tail_dag()

with DAG2("classic", start_date=START, schedule="@daily", catchup=False) as classic:
    a = EmptyOperator(task_id="a")
    b = BashOperator(task_id="b", bash_command="echo {{ ds }}")
    c = PythonOperator(task_id="c", python_callable=plain, op_kwargs={"x": 1})
    d = BranchPythonOperator(task_id="d", python_callable=choose)
    wait = TimeDeltaSensor(task_id="wait", delta=datetime.timedelta(seconds=1))
    copy = CopyOperator(task_id="copy", src="k", outlets=[RAW])
    with TaskGroup("tg") as tg:
        inner = [EmptyOperator(task_id=f"i{i}") for i in range(3)]
    a >> [b, c] >> d
    d << wait
    chain(a, tg, copy)
    cross_downstream([a, b], [c, d])
    XComArg(c)["x"] >> XComArg2(b)
    c.output >> copy
    a.set_downstream(b)
    classic.doc_md = __doc__

try:
    raise AirflowSkipException("skip")
except AirflowSkipException:
    pass
assert issubclass(AirflowFailException, Exception)
