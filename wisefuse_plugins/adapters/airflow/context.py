"""What the conversion of one DAG shares between tasks: the opaque signal, the tasks
already converted (:class:`Producer`), and which upstream an XComArg reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

ParallelismSource = Literal["static", "observed", "expected", "override"]
_RETURN_KEY = "return_value"  # Airflow's XCom key for a task's whole return value


class Opaque(Exception):  # a signal, not an error: the task stays in Airflow
    """Raised while analysing a task: it cannot be a Python stage, for ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Producer:
    """What a consumer needs to know about an upstream task that is already converted."""

    id: str
    task_id: str
    mapped: bool  # mapped in the IR (has item bindings)
    lost: str | None  # mapped in Airflow in a way the IR cannot show: consumers stay opaque
    parallelism: int
    source: ParallelismSource


@dataclass
class Context:
    """One DAG's conversion: Airflow's names, the code root, stage ids, instance counts
    given or observed, and the tasks converted so far."""

    af: SimpleNamespace
    root: Path
    ids: dict[str, str]  # task_id -> stage id
    overrides: dict[str, int]
    observed: dict[str, int]
    done: dict[str, Producer] = field(default_factory=dict)  # by task_id
    by_stage: dict[str, Producer] = field(default_factory=dict)


def reason_of(err: Exception) -> str:
    if isinstance(err, Opaque):
        return err.reason
    return f"could not analyse the task ({type(err).__name__}: {err})"


def xcom_producer(param: str, arg: Any, ctx: Context) -> tuple[Producer, str | None]:
    """The upstream task an XComArg reads, and the key (None: the whole return value)."""
    if not isinstance(arg, ctx.af.PlainXComArg):
        raise Opaque(
            f"{param!r} is a {type(arg).__name__} (XComArg .map(), .zip() or .concat()): Airflow computes its values"
        )
    producer = ctx.done.get(arg.operator.task_id)
    if producer is None:
        raise Opaque(f"{param!r} reads {arg.operator.task_id!r}, which is not upstream of it")
    return producer, None if arg.key == _RETURN_KEY else arg.key
