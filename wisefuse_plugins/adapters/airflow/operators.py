"""Which operators can become Python stages: only ``PythonOperator`` and TaskFlow
``@task`` tasks with the ``all_success`` trigger rule; every other operator stays in
Airflow, with the reason."""

from __future__ import annotations

from typing import Any

from wisefuse_plugins.adapters.airflow.context import Context


def operator_class(task: Any) -> type:
    cls = getattr(task, "operator_class", None)  # MappedOperator: the class it expands
    return cls if isinstance(cls, type) else type(task)


def operator_name(cls: type) -> str:
    return getattr(cls, "custom_operator_name", None) or cls.__name__


def trigger_rule(task: Any) -> str:
    rule = getattr(task, "trigger_rule", "all_success")
    return str(getattr(rule, "value", rule))


_OPAQUE_BY_BASE: tuple[tuple[str, str], ...] = (
    # (a class name in the operator's MRO, why the task stays in Airflow); first match wins
    ("BaseSensorOperator", "a sensor: waits for something outside the workflow"),
    ("_BasePythonVirtualenvOperator", "runs the callable in a separate Python environment"),
    ("BaseBranchOperator", "chooses which downstream tasks run (it skips the others)"),
    ("ShortCircuitOperator", "can skip every downstream task"),
    ("SkipMixin", "can skip downstream tasks"),
    ("BashOperator", "runs a shell command"),
    ("_BashDecoratedOperator", "runs the shell command the function returns"),
    ("EmptyOperator", "does nothing: a placeholder that only orders other tasks"),
    ("TriggerDagRunOperator", "triggers another DAG"),
    ("DecoratedOperator", "a @task variant that runs the function its own way"),
    ("PythonOperator", "a PythonOperator subclass that may change how the callable runs"),
)


def why_not_python(task: Any, ctx: Context) -> str | None:
    """Why the task cannot run as a plain function call elsewhere, or None if it can."""
    cls = operator_class(task)
    if cls not in (ctx.af.PythonOperator, ctx.af.Decorated):
        return _operator_reason(cls)
    if getattr(task, "is_setup", False) or getattr(task, "is_teardown", False):
        return "a setup/teardown task: Airflow runs it around others whatever their outcome"
    rule = trigger_rule(task)
    if rule != "all_success":
        return f"trigger rule {rule}: it also runs when upstream tasks fail or skip, which a fused unit does not express"
    for up in getattr(task, "upstream_list", ()):
        if "BaseBranchOperator" in {c.__name__ for c in operator_class(up).__mro__}:
            return f"the branch task {up.task_id!r} chooses it by task id, which a fused unit would not keep"
    return None


def _operator_reason(cls: type) -> str:
    name = operator_name(cls)
    bases = {c.__name__ for c in cls.__mro__}
    for base, why in _OPAQUE_BY_BASE:
        if base in bases:
            return f"{name}: {why}"
    if "sql" in cls.__module__.lower():
        return f"{name}: runs SQL"
    return f"{name}: not a Python callable (only PythonOperator and @task tasks run elsewhere)"
