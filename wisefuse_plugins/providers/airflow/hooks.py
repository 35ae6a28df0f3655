"""The hook: where plan units run (the local Lambda service, or AWS Lambda) and where data lives.

``WiseFuseLambdaHook(backend="local")`` (the default) runs units on the local Lambda
service (:mod:`wisefuse_plugins.runtime.backends.service`): boto3's Lambda client and the
AWS backend's own deploy and invoke, against a service on 127.0.0.1 that this hook starts
on demand (one per ``$WISEFUSE_HOME`` and engine options; it stops itself after
``$WISEFUSE_LAMBDA_IDLE_S`` idle seconds, 900 by default) or that runs already
(``wisefuse lambda serve``; ``$WISEFUSE_LAMBDA_ENDPOINT`` names its URL). Each unit runs
from its deployment package, as on AWS. The service keeps the warm execution
environments, so the task processes of a real Airflow executor, one per task instance,
reuse them as Lambda's callers do. Units import DAG files with the framework shim, never
Airflow itself.

``WiseFuseLambdaHook(backend="aws", aws_conn_id=...)`` builds
:class:`~wisefuse_plugins.runtime.backends.aws.AwsLambdaBackend` with boto3 clients from
an Airflow AWS connection (through the Amazon provider's ``AwsBaseHook``: keys, role
assumption, region and endpoint all come from the connection and are never logged).

The store is ``store=``, else ``$WISEFUSE_STORE``, else ``$WISEFUSE_HOME/store`` (local);
the aws backend needs an ``s3://bucket/prefix`` store (``store=``, ``$WISEFUSE_STORE`` or
the connection's extra ``wisefuse_store``).

A unit's function sees only its configured environment, on both backends, as a Lambda
function does: ``environment=`` (Lambda's ``Environment.Variables``) gives every unit's
function variables the user's code reads; nothing of the task process's own environment
is passed on (a task process's Airflow settings broke every unit that imported Airflow).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk import BaseHook

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.ir.names import safe_name
from wisefuse_plugins.plan.schema import Arch, Unit
from wisefuse_plugins.runtime import store as st
from wisefuse_plugins.runtime.spec import UnitSpec, write_spec

if TYPE_CHECKING:
    from wisefuse_plugins.runtime.backends.service.client import ServiceUnits
    from wisefuse_plugins.runtime.invoker import Invoked

Backend = Literal["local", "aws"]
BACKENDS: tuple[str, ...] = ("local", "aws")

#: Engine settings of the local Lambda service the hook starts (``LocalLambda`` options).
ENV_LOCAL_CONCURRENCY = "WISEFUSE_LOCAL_CONCURRENCY"
ENV_LOCAL_KEEP_ALIVE = "WISEFUSE_LOCAL_KEEP_ALIVE_S"
ENV_LOCAL_PRELOAD = "WISEFUSE_LOCAL_PRELOAD"
#: Invocations running, and environments kept warm, at once (over it, idle environments of
#: other functions are retired): the Prefect block's default too.
DEFAULT_LOCAL_CONCURRENCY = 16
#: Connection extras the aws backend reads (besides the AwsBaseHook's own).
EXTRA_ROLE = "wisefuse_execution_role_arn"
EXTRA_STORE = "wisefuse_store"
EXTRA_PREFIX = "wisefuse_function_prefix"
#: Function names on the local service: ``airflow-<workflow>-<unit>-<hash>``.
LOCAL_PREFIX = "airflow"

_lock = threading.Lock()
_aws_deployed: dict[tuple[str, str, int, str], str] = {}  # (prefix, unit, memory, arch) -> spec


@dataclass(frozen=True)
class Deployed:
    """A deployed unit: what :meth:`WiseFuseLambdaHook.invoke` needs to call it."""

    function: str  # the unit id the backend knows it by
    spec_sha: str
    code_root: str


def spec_sha(spec: UnitSpec) -> str:
    """Content hash of a unit spec: same spec, same function; changed spec, new one."""
    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()


def local_engine_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The local service's engine options: the environment settings, then ``local_options``.

    Nothing is preloaded unless asked (``$WISEFUSE_LOCAL_PRELOAD``, comma-separated module
    names): units import DAG files through the framework shim, so a cold start imports
    what the unit's own code needs, as on Lambda.
    """
    kwargs: dict[str, Any] = {"concurrency_limit": DEFAULT_LOCAL_CONCURRENCY}
    preload = tuple(m for m in os.environ.get(ENV_LOCAL_PRELOAD, "").split(",") if m.strip())
    if preload:
        kwargs["preload"] = list(preload)
    if os.environ.get(ENV_LOCAL_CONCURRENCY):
        kwargs["concurrency_limit"] = int(os.environ[ENV_LOCAL_CONCURRENCY])
    if os.environ.get(ENV_LOCAL_KEEP_ALIVE):
        kwargs["keep_alive_s"] = float(os.environ[ENV_LOCAL_KEEP_ALIVE])
    for key, value in (options or {}).items():
        kwargs[key] = list(value) if isinstance(value, tuple) else value
    return kwargs


def close_local() -> None:
    """Stop the local Lambda services this process started and forget its units there."""
    from wisefuse_plugins.runtime.backends.service.client import close_shared

    close_shared()


def _check_environment(environment: Mapping[str, str] | None) -> dict[str, str]:
    """The hook's ``environment=`` as a dict of strings, or a clear error naming the variable."""
    from wisefuse_plugins.runtime.backends.local import check_environment

    try:
        return check_environment(environment, "WiseFuseLambdaHook")
    except ValueError as err:
        raise WiseFuseError(str(err), hint="pass environment={'NAME': 'value', ...}") from None


class WiseFuseLambdaHook(BaseHook):
    """Deploy and invoke plan units on the local Lambda or on AWS Lambda.

    ``local_options``: keyword arguments of the local service's engine, ``LocalLambda``
    (``$WISEFUSE_LOCAL_CONCURRENCY``, ``$WISEFUSE_LOCAL_KEEP_ALIVE_S`` and
    ``$WISEFUSE_LOCAL_PRELOAD``, comma-separated modules for a fork server to import once,
    work too); hooks asking for the same options share one service. ``execution_role_arn``, ``function_prefix``,
    ``layers``: for ``aws`` (the
    first two default to the connection extras ``wisefuse_execution_role_arn`` and
    ``wisefuse_function_prefix``). ``environment``: variables of every unit's function, on
    either backend (the task's own environment never reaches a function).
    """

    conn_name_attr = "aws_conn_id"
    default_conn_name = "aws_default"
    conn_type = "aws"
    hook_name = "WiseFuse Lambda"

    def __init__(
        self,
        backend: Backend = "local",
        aws_conn_id: str | None = None,
        *,
        store: str | None = None,
        region_name: str | None = None,
        execution_role_arn: str | None = None,
        function_prefix: str | None = None,
        layers: Sequence[str] | Mapping[str, Sequence[str]] = (),
        local_options: Mapping[str, Any] | None = None,
        environment: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if backend not in BACKENDS:
            raise WiseFuseError(
                f"unknown wisefuse backend {backend!r}", hint="use backend='local' or 'aws'"
            )
        self.backend = backend
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.execution_role_arn = execution_role_arn
        self.function_prefix = function_prefix
        self.layers = layers
        self.local_options = dict(local_options or {})
        self.environment = _check_environment(environment)
        self._store_arg = store
        self._store: st.Store | None = None
        self._aws: Any = None
        self._extras: dict[str, Any] | None = None

    # -- store ------------------------------------------------------------------------

    @property
    def store_url(self) -> str:
        url = self._store_arg or os.environ.get("WISEFUSE_STORE")
        if self.backend == "aws":
            url = url or self._extra().get(EXTRA_STORE)
            if not url or not str(url).startswith("s3://"):
                raise WiseFuseError(
                    f"the aws backend needs an S3 store, got {url!r}",
                    hint=f"pass store='s3://bucket/prefix', set $WISEFUSE_STORE, or the connection extra {EXTRA_STORE!r}",
                )
            return str(url)
        url = url or str(st.wisefuse_home() / "store")
        if "://" not in url:  # workers run in the code root: give them an absolute path
            url = str(Path(url).expanduser().resolve())
        return url

    def get_store(self) -> st.Store:
        """The store units read and write (S3 clients come from the connection for ``aws``)."""
        if self._store is None:
            url = self.store_url
            if url.startswith("s3://"):
                from urllib.parse import urlparse

                from wisefuse_plugins.runtime.s3store import S3Store

                parsed = urlparse(url)
                client = self._aws_client("s3") if self.aws_conn_id else None
                self._store = S3Store(parsed.netloc, parsed.path.lstrip("/"), client=client)
            else:
                self._store = st.open_store(url)
        return self._store

    # -- deploy and invoke ------------------------------------------------------------

    def deploy(
        self,
        spec: UnitSpec,
        *,
        memory_mb: int,
        arch: Arch,
        code_root: str | Path,
        workflow_name: str | None = None,
    ) -> Deployed:
        """Make the unit's function exist with this spec, memory and architecture (idempotent)."""
        sha = spec_sha(spec)
        workflow_name = workflow_name or spec.workflow
        root = Path(code_root).resolve()
        if self.backend == "local":
            return self._deploy_local(spec, sha, memory_mb, arch, root, workflow_name)
        return self._deploy_aws(spec, sha, memory_mb, arch, root, workflow_name)

    @property
    def preloads(self) -> bool:
        """True when local cold starts fork from preloaded modules: their INIT then leaves
        out the framework's import, which a real Lambda cold start pays."""
        return self.backend == "local" and bool(
            local_engine_options(self.local_options).get("preload")
        )

    def invoke(self, deployed: Deployed, event: dict[str, Any]) -> Invoked:
        """Invoke a deployed unit synchronously; task errors come back in the payload."""
        if self.backend == "local":
            return self._local_units(deployed.code_root).invoke(deployed.function, event)
        return self._aws_backend().invoke(deployed.function, event)

    def _spec_file(self, spec: UnitSpec, sha: str) -> Path:
        """Content-addressed spec file: a changed spec never reuses a warm worker's old one."""
        path = st.wisefuse_home() / "airflow" / "specs" / f"{sha[:32]}.unit.json"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_spec(spec, path)
        return path

    def _deploy_local(
        self, spec: UnitSpec, sha: str, memory_mb: int, arch: Arch, root: Path, workflow: str
    ) -> Deployed:
        # one function per (spec, memory, architecture, code root, store, environment,
        # engine options): a function never changes under a run that uses it
        units = self._local_units(str(root))
        settings = (
            sorted(units.options.items()),
            units.store_url,
            str(root),
            sorted(self.environment.items()),
        )
        ident = hashlib.sha256(repr((sha, memory_mb, arch, *settings)).encode()).hexdigest()[:10]
        name = safe_name(f"{workflow}-{spec.unit}-{ident}")
        unit = Unit(id=name, stages=[s.id for s in spec.stages], memory_mb=memory_mb, arch=arch)
        units.deploy(unit, self._spec_file(spec, sha))
        return Deployed(name, sha, str(root))

    def _local_units(self, code_root: str) -> ServiceUnits:
        """This process's units on the local service for the hook's settings and ``code_root``."""
        from wisefuse_plugins.runtime.backends.service.client import shared_units

        return shared_units(
            code_root=Path(code_root),
            store_url=self.store_url,
            prefix=LOCAL_PREFIX,
            environment=self.environment,
            options=local_engine_options(self.local_options),
        )

    def _deploy_aws(
        self, spec: UnitSpec, sha: str, memory_mb: int, arch: Arch, root: Path, workflow: str
    ) -> Deployed:
        unit_id = safe_name(f"{workflow}-{spec.unit}", max_length=48)
        backend = self._aws_backend(root)
        key = (backend.prefix, unit_id, memory_mb, arch)
        with _lock:
            if _aws_deployed.get(key) == sha:  # this process deployed it already
                return Deployed(unit_id, sha, str(root))
        path = self._spec_file(spec, sha)
        unit = Unit(id=unit_id, stages=[s.id for s in spec.stages], memory_mb=memory_mb, arch=arch)
        backend.deploy(unit, path)  # packages the code under root (the backend's code_root)
        with _lock:
            _aws_deployed[key] = sha
        return Deployed(unit_id, sha, str(root))

    # -- AWS ----------------------------------------------------------------------------

    def _extra(self) -> dict[str, Any]:
        """The connection's extras (read once per hook)."""
        if not self.aws_conn_id:
            return {}
        if self._extras is None:
            conn = self.get_connection(self.aws_conn_id)
            self._extras = dict(conn.extra_dejson or {})
        return self._extras

    def _aws_client(self, service: str) -> Any:
        """A boto3 client from the Airflow connection, with retries under our control."""
        from botocore.config import Config

        from wisefuse_plugins.runtime.backends.aws import READ_TIMEOUT_S

        try:
            from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
        except ImportError:
            from wisefuse_plugins.errors import MissingExtraError

            raise MissingExtraError(
                "apache-airflow-providers-amazon", "airflow", "the aws backend from Airflow"
            ) from None
        config = Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            read_timeout=READ_TIMEOUT_S,
            connect_timeout=10,
        )
        hook = AwsBaseHook(
            aws_conn_id=self.aws_conn_id, client_type=service, region_name=self.region_name
        )
        return hook.get_client_type(region_name=self.region_name, config=config)

    def _aws_backend(self, root: Path | None = None) -> Any:
        if self._aws is None:
            from wisefuse_plugins.runtime.backends.aws import AwsLambdaBackend

            extra = self._extra()
            role = self.execution_role_arn or extra.get(EXTRA_ROLE)
            if not role:
                raise WiseFuseError(
                    "the aws backend needs the functions' execution role",
                    hint=f"pass execution_role_arn=... or set the connection extra {EXTRA_ROLE!r}",
                )
            factory = self._aws_client if self.aws_conn_id else None
            self._aws = AwsLambdaBackend(
                role_arn=str(role),
                store_url=self.store_url,
                prefix=self.function_prefix or str(extra.get(EXTRA_PREFIX) or "wf"),
                region=self.region_name,
                layers=self.layers,
                code_root=root,
                environment=self.environment,
                client_factory=factory,
            )
        return self._aws
