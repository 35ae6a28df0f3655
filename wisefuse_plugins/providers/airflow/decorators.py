"""``@task.wisefuse_lambda``: a TaskFlow task whose function runs on Lambda as a one-stage unit.

.. code-block:: python

    @task.wisefuse_lambda(memory_mb=3538, arch="arm64")
    def train(data: dict, alpha: float) -> dict: ...

For new code that should run on Lambda without a plan. When the task runs, its arguments
(literals and upstream XComs, already resolved by Airflow) are written to the store, the
function is deployed as a unit of one stage (referenced by its file under the code root,
the DAG folder by default, and its code hash) and invoked; its return value is the task's
XCom, as with ``@task`` (``multiple_outputs`` too). ``.expand()`` works: each mapped
instance is one invocation.

The function must be importable by name from its file (module level, not a lambda or a
nested function) and must not ask for the Airflow context (``ti``, ``**kwargs``...): it runs
in a Lambda execution environment, where there is none.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk.bases.decorator import DecoratedOperator, task_decorator_factory
from airflow.sdk.definitions.context import KNOWN_CONTEXT_KEYS
from airflow.sdk.exceptions import AirflowException

from wisefuse_plugins.ir import CallableRef, Output, callable_ref
from wisefuse_plugins.ir.names import safe_name
from wisefuse_plugins.plan.schema import Arch
from wisefuse_plugins.providers.airflow.hooks import Backend, WiseFuseLambdaHook
from wisefuse_plugins.providers.airflow.invoking import invoke_logged
from wisefuse_plugins.providers.airflow.runids import store_run_id
from wisefuse_plugins.providers.airflow.timings import record_timings
from wisefuse_plugins.providers.airflow.unitspec import DEFAULT_MEMORY_MB
from wisefuse_plugins.providers.airflow.xcomvalues import output_values
from wisefuse_plugins.runtime import store as st
from wisefuse_plugins.runtime.spec import StageSpec, UnitSpec

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.bases.decorator import TaskDecorator


def check_function(fn: Callable[..., Any]) -> None:
    """Refuse, when the DAG is parsed, a function that cannot run in a Lambda environment."""
    qualname = getattr(fn, "__qualname__", "")
    if not qualname or "<lambda>" in qualname or "<locals>" in qualname:
        raise TypeError(
            f"@task.wisefuse_lambda needs a module-level function (got {qualname or fn!r}): "
            "Lambda imports it by name from its file"
        )
    for p in inspect.signature(fn).parameters.values():
        if p.kind is inspect.Parameter.VAR_KEYWORD or p.name in KNOWN_CONTEXT_KEYS:
            what = f"**{p.name}" if p.kind is inspect.Parameter.VAR_KEYWORD else repr(p.name)
            raise TypeError(
                f"@task.wisefuse_lambda function {qualname} takes {what}, which Airflow fills "
                "with its context: a Lambda environment has no Airflow context; pass values explicitly"
            )
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            raise TypeError(
                f"@task.wisefuse_lambda function {qualname} takes *{p.name}: name its parameters"
            )


def plain(value: Any) -> Any:
    """``value`` with Airflow's lazy XCom sequences (a mapped task's outputs) made lists.

    They hold a reference to the run's XCom backend, which neither pickles nor exists in
    a Lambda environment.
    """
    if isinstance(value, list | tuple):
        return type(value)(plain(v) for v in value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray):
        return [plain(v) for v in value]
    return value


class WiseFuseLambdaDecoratedOperator(DecoratedOperator):
    """The operator behind ``@task.wisefuse_lambda`` (see the module docstring)."""

    custom_operator_name = "@task.wisefuse_lambda"
    template_fields: Sequence[str] = ("op_args", "op_kwargs")
    shallow_copy_attrs: Sequence[str] = ("python_callable",)
    ui_color = "#fbd38d"

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Collection[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        memory_mb: int = DEFAULT_MEMORY_MB,
        arch: Arch = "x86_64",
        backend: Backend = "local",
        aws_conn_id: str | None = None,
        store: str | None = None,
        code_root: str | os.PathLike[str] | None = None,
        archive: str | bool | None = None,
        hook_params: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        check_function(python_callable)
        super().__init__(
            python_callable=python_callable, op_args=op_args, op_kwargs=op_kwargs, **kwargs
        )
        self.memory_mb = memory_mb
        self.arch = arch
        self.backend = backend
        self.aws_conn_id = aws_conn_id
        self.store = store
        self.code_root = os.fspath(code_root) if code_root is not None else None
        self.archive = archive
        self.hook_params = dict(hook_params or {})

    def _root(self) -> Path:
        if self.code_root:
            return Path(self.code_root).resolve()
        fileloc = getattr(self.dag, "fileloc", None) if self.has_dag() else None
        return Path(fileloc).resolve().parent if fileloc else Path.cwd()

    def _reference(self) -> CallableRef:
        try:
            return callable_ref(self.python_callable, self._root())
        except ValueError as err:
            raise AirflowException(
                f"@task.wisefuse_lambda cannot reference {self.python_callable.__qualname__}: "
                f"{err} (pass code_root= the folder that holds its file)"
            ) from None

    def execute(self, context: Context) -> Any:
        ref = self._reference()
        try:
            bound = inspect.signature(self.python_callable).bind(*self.op_args, **self.op_kwargs)
        except TypeError as err:
            raise AirflowException(f"{self.task_id}: {err}") from None
        ti = context["ti"]
        stage = safe_name(self.task_id)
        run_id = store_run_id(
            self.dag_id,
            context["dag_run"].run_id,
            self.task_id,
            str(ti.map_index),
            str(ti.try_number),
        )
        hook = WiseFuseLambdaHook(
            backend=self.backend, aws_conn_id=self.aws_conn_id, store=self.store, **self.hook_params
        )
        store = hook.get_store()
        bindings = {}
        for name, value in bound.arguments.items():
            source = f"{stage}__{name}"
            st.put(store, st.output_key(run_id, source), plain(value), f"argument {name!r}")
            bindings[name] = Output(stage=source)
        spec = UnitSpec(
            workflow=self.dag_id,
            unit=stage,
            bundled=False,
            stages=[StageSpec(id=stage, callable=ref, bindings=bindings, mapped=False)],
            exports=[stage],
            scatter=[],
            mapped_upstream=[],
        )
        deployed = hook.deploy(
            spec, memory_mb=self.memory_mb, arch=self.arch, code_root=self._root()
        )
        invoked = invoke_logged(
            self.log,
            hook,
            deployed,
            {"run_id": run_id},
            unit_id=self.task_id,
            label=f"{ref.qualname} on {self.backend}",
            memory_mb=self.memory_mb,
            stage_tasks={},
        )
        value = output_values(invoked.payload, store, [stage]).get(stage)
        record_timings(
            self.log,
            context,
            spec,
            invoked,
            memory_mb=self.memory_mb,
            arch=self.arch,
            backend=self.backend,
            bundle_size=1,
            archive=self.archive,
            init_measured=not hook.preloads,
        )
        return self._handle_output(return_value=value)


def wisefuse_lambda_task(
    python_callable: Callable[..., Any] | None = None,
    multiple_outputs: bool | None = None,
    **kwargs: Any,
) -> TaskDecorator:
    """``@task.wisefuse_lambda(memory_mb=..., arch=..., backend=..., aws_conn_id=..., store=...)``."""
    return task_decorator_factory(
        python_callable=python_callable,
        multiple_outputs=multiple_outputs,
        decorated_operator_class=WiseFuseLambdaDecoratedOperator,
        **kwargs,
    )
