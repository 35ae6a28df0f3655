"""Retries, timeouts, callbacks and e-mail settings, from default_args and per task."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task


def notify_failure(context) -> None:
    print("failed:", context["ti"].task_id)


def notify_success(context) -> None:
    print("succeeded:", context["ti"].task_id)


def notify_retry(context) -> None:
    print("retrying:", context["ti"].task_id)


@task
def fetch() -> list[int]:
    return [1, 2, 3, 4]


@task(
    retries=3,
    retry_delay=timedelta(seconds=1),
    retry_exponential_backoff=True,
    max_retry_delay=timedelta(seconds=4),
    on_retry_callback=notify_retry,
)
def clean(rows: list[int]) -> list[int]:
    return [r for r in rows if r % 2 == 0]


@task(execution_timeout=timedelta(minutes=5), on_success_callback=notify_success)
def store(rows: list[int]) -> int:
    return len(rows)


@task(doc_md="Counts what was stored.", email=["oncall@example.com"], email_on_retry=True)
def audit(n: int) -> str:
    return f"stored {n}"


def dag_failed(context) -> None:
    print("DAG run failed:", context["dag_run"].run_id)


@dag(
    dag_id="retries_callbacks",
    dag_display_name="Retries and callbacks",
    schedule=None,
    on_failure_callback=dag_failed,
    default_args={
        "retries": 1,
        "retry_delay": timedelta(seconds=2),
        "on_failure_callback": notify_failure,
        "email_on_failure": False,
    },
)
def retries_callbacks():
    audit(store(clean(fetch())))


retries_callbacks()
