"""Plan units on the local Lambda service: the AWS backend, pointed at this machine.

:class:`ServiceUnits` is the executor's ``Invoker`` the Airflow hook and the Prefect block
use for ``backend="local"``: boto3's own Lambda client against the service
(:mod:`.ondemand` finds it or starts it), and :class:`~wisefuse_plugins.runtime.backends.aws.AwsLambdaBackend`
deploying each unit from its deployment package (the zip ``wisefuse deploy`` uploads to
AWS) and invoking it, so the local path and the AWS path are one code path. Warm
environments live in the service, so task processes that come and go (a real Airflow
executor, a Prefect worker) reuse them, as callers of a Lambda function do.

If the service went away between two calls (its idle shutdown, a restart), the next call
finds or starts it again and deploys the units anew before invoking: nothing had been sent,
so nothing runs twice. An invocation the service dies in the middle of is an error.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from wisefuse_plugins.errors import MissingExtraError
from wisefuse_plugins.plan.limits import MAX_TIMEOUT_S
from wisefuse_plugins.plan.schema import Unit
from wisefuse_plugins.runtime.backends.aws import READ_TIMEOUT_S, AwsError, AwsLambdaBackend
from wisefuse_plugins.runtime.backends.service import ondemand
from wisefuse_plugins.runtime.backends.units import FRAMEWORK_SHIM_VAR, thread_env
from wisefuse_plugins.runtime.invoker import Invoked

REGION = "us-east-1"
#: The execution role the service's functions are created with (it checks none).
LOCAL_ROLE = "arn:aws:iam::000000000000:role/wisefuse-local"
#: Errors meaning the request never reached a running service: safe to send again.
NOT_SENT = frozenset({"EndpointConnectionError"})


def lambda_client(url: str, region: str = REGION) -> Any:
    """boto3's Lambda client for the service at ``url`` (our retries, Lambda's long reads)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise MissingExtraError("boto3", "aws", "the local Lambda service") from None
    return boto3.client(
        "lambda",
        endpoint_url=url,
        region_name=region,
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            read_timeout=READ_TIMEOUT_S,
            connect_timeout=5,
            tcp_keepalive=True,
        ),
    )


def function_environment(environment: Mapping[str, str] | None) -> dict[str, str]:
    """What every unit function is configured with on the service, before the user's own:
    BLAS pools of one thread and the framework stand-ins (a unit imports the DAG or flow
    file without Airflow or Prefect, as on Lambda, where they are not installed)."""
    return {**thread_env(), FRAMEWORK_SHIM_VAR: "always", **(environment or {})}


class ServiceUnits:
    """Deploy and invoke plan units on the local Lambda service (started on demand).

    ``options``: keyword arguments of the service's engine (``LocalLambda``); callers with
    the same options share one service. ``prefix``: function names are ``<prefix>-<unit>``.
    """

    def __init__(
        self,
        *,
        code_root: str | Path,
        store_url: str,
        prefix: str,
        environment: Mapping[str, str] | None = None,
        options: Mapping[str, Any] | None = None,
        timeout_s: int = int(MAX_TIMEOUT_S),
        extra_roots: Sequence[str | Path] = (),
    ) -> None:
        self.code_root = Path(code_root)
        self.store_url = store_url
        self.prefix = prefix
        self.environment = function_environment(environment)
        self.options = dict(options or {})
        self.timeout_s = timeout_s
        self.extra_roots = tuple(extra_roots)
        self._units: dict[str, tuple[Unit, Path]] = {}
        self.url = ""
        self.backend = self._connect()

    def _connect(self) -> AwsLambdaBackend:
        self.url = ondemand.ensure(self.options)
        url = self.url
        return AwsLambdaBackend(
            role_arn=LOCAL_ROLE,
            store_url=self.store_url,
            prefix=self.prefix,
            region=REGION,
            timeout_s=self.timeout_s,
            code_root=self.code_root,
            extra_roots=self.extra_roots,
            environment=self.environment,
            client_factory=lambda service: lambda_client(url),
            on_this_machine=True,
            max_attempts=1000,  # throttled by the engine's concurrency limit: wait, as locally
            max_delay_s=1.0,
        )

    def function_name(self, unit_id: str) -> str:
        return self.backend.function_name(unit_id)

    def deploy(self, unit: Unit, spec_path: Path) -> None:
        self._units[unit.id] = (unit, Path(spec_path))
        try:
            self.backend.deploy(unit, spec_path)
        except AwsError as err:
            if not self._gone(err):
                raise
            self._reconnect()

    def invoke(self, unit_id: str, event: dict[str, Any]) -> Invoked:
        try:
            return self.backend.invoke(unit_id, event)
        except AwsError as err:
            if not self._gone(err, unit_id):
                raise
        self._reconnect()
        return self.backend.invoke(unit_id, event)

    def _gone(self, err: AwsError, unit_id: str | None = None) -> bool:
        """True when the service was not there to get the request: nothing was sent, or it
        restarted and no longer knows a function we deployed (an error while it ran the
        invocation is not: that is the invocation's outcome)."""
        if err.code in NOT_SENT:
            return True
        return err.code == "ResourceNotFoundException" and unit_id in self._units

    def _reconnect(self) -> None:
        """Find or start the service again and deploy every unit this object deployed."""
        self.backend = self._connect()
        for unit, spec_path in self._units.values():
            self.backend.deploy(unit, spec_path)


_shared_lock = threading.Lock()
_shared: dict[tuple[Any, ...], ServiceUnits] = {}


def shared_units(
    *,
    code_root: Path,
    store_url: str,
    prefix: str,
    environment: Mapping[str, str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> ServiceUnits:
    """The process's :class:`ServiceUnits` for these settings, made on first request.

    It remembers what it deployed, so later DAG or flow runs in the process deploy nothing
    and invoke the same (warm) functions; the Airflow hook and the Prefect block share it.
    """
    key = (
        repr(sorted((options or {}).items())),
        store_url,
        str(code_root),
        prefix,
        tuple(sorted((environment or {}).items())),
    )
    with _shared_lock:
        units = _shared.get(key)
        if units is None:
            units = _shared[key] = ServiceUnits(
                code_root=code_root,
                store_url=store_url,
                prefix=prefix,
                environment=environment,
                options=options,
            )
        return units


def close_shared() -> None:
    """Forget the shared units and stop the local Lambda services this process started."""
    with _shared_lock:
        _shared.clear()
    ondemand.stop_started()
