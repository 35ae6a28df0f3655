"""The hook: where plan units run (the embedded local Lambda, or AWS Lambda) and where data lives.

``WiseFuseLambdaHook(backend="local")`` (the default) shares one :class:`LocalLambda` per
process and one :class:`LocalUnits` per (store, code root): every task of every DAG run in
the process reuses warm workers, as Lambda reuses execution environments. Workers are
spawned, not forked from a preloaded server: units import DAG files with the framework
shim, never Airflow itself, so there is nothing heavy to preload (``$WISEFUSE_LOCAL_PRELOAD``
names modules to preload anyway), and INIT is measured as Lambda's. They are
closed when the process exits. ``dag.test()`` runs every task in one process, so a whole test run
shares them; a real Airflow executor starts one process per task instance, so there each
task starts its own (use ``backend="aws"`` in production).

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
    from wisefuse_plugins.runtime.backends.local import LocalLambda
    from wisefuse_plugins.runtime.backends.units import LocalUnits
    from wisefuse_plugins.runtime.executor import Invoked

Backend = Literal["local", "aws"]
BACKENDS: tuple[str, ...] = ("local", "aws")

#: Environment settings of the process-wide local Lambda (read when it is first created).
ENV_LOCAL_CONCURRENCY = "WISEFUSE_LOCAL_CONCURRENCY"
ENV_LOCAL_KEEP_ALIVE = "WISEFUSE_LOCAL_KEEP_ALIVE_S"
ENV_LOCAL_PRELOAD = "WISEFUSE_LOCAL_PRELOAD"
DEFAULT_PRELOAD = ""
#: Connection extras the aws backend reads (besides the AwsBaseHook's own).
EXTRA_ROLE = "wisefuse_execution_role_arn"
EXTRA_STORE = "wisefuse_store"
EXTRA_PREFIX = "wisefuse_function_prefix"

_lock = threading.Lock()
#: (Lambda options, store URL, code root, environment) -> units
_local_units: dict[tuple[Any, ...], LocalUnits] = {}
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


def _local_lambda_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The hook's local Lambda options: the environment settings, then ``local_options``."""
    # units import DAG files through the framework shim (no Airflow in the worker, as on
    # Lambda): preloading airflow.sdk in a fork server cost every task process of a real
    # executor 1.5 s of CPU for modules each worker then hides; modules may be named here
    preload = os.environ.get(ENV_LOCAL_PRELOAD, DEFAULT_PRELOAD)
    kwargs: dict[str, Any] = {"preload": tuple(m for m in preload.split(",") if m.strip())}
    if os.environ.get(ENV_LOCAL_CONCURRENCY):
        kwargs["concurrency_limit"] = int(os.environ[ENV_LOCAL_CONCURRENCY])
    if os.environ.get(ENV_LOCAL_KEEP_ALIVE):
        kwargs["keep_alive_s"] = float(os.environ[ENV_LOCAL_KEEP_ALIVE])
    kwargs.update(options or {})
    return kwargs


def _shared_local_lambda(options: Mapping[str, Any] | None) -> LocalLambda:
    """The process's local Lambda with these options (shared with every hook asking alike)."""
    return _shared().shared_local_lambda(**_local_lambda_options(options))


def _forget_units() -> None:
    with _lock:
        _local_units.clear()


def _shared() -> Any:
    """The shared-Lambda registry, imported on first use (parsing a DAG or flow file must
    not import the runtime); units bound to a closed Lambda are forgotten with it."""
    from wisefuse_plugins.runtime.backends import shared

    shared.on_close(_forget_units)
    return shared


def close_local() -> None:
    """Stop the process-wide local Lambdas (workers and cgroups); the next use starts anew."""
    _shared().close_shared_local_lambdas()


def _check_environment(environment: Mapping[str, str] | None) -> dict[str, str]:
    """The hook's ``environment=`` as a dict of strings, or a clear error naming the variable."""
    from wisefuse_plugins.runtime.backends.local import check_environment

    try:
        return check_environment(environment, "WiseFuseLambdaHook")
    except ValueError as err:
        raise WiseFuseError(str(err), hint="pass environment={'NAME': 'value', ...}") from None


class WiseFuseLambdaHook(BaseHook):
    """Deploy and invoke plan units on the local Lambda or on AWS Lambda.

    ``local_options``: keyword arguments of :class:`LocalLambda` (the first hook of the
    process creates it; ``$WISEFUSE_LOCAL_CONCURRENCY``, ``$WISEFUSE_LOCAL_KEEP_ALIVE_S`` and
    ``$WISEFUSE_LOCAL_PRELOAD``, comma-separated modules for a fork server to import once,
    work too; by default nothing is preloaded). ``execution_role_arn``, ``function_prefix``,
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
            _local_lambda_options(self.local_options)["preload"]
        )

    def invoke(self, deployed: Deployed, event: dict[str, Any]) -> Invoked:
        """Invoke a deployed unit synchronously; task errors come back in the payload."""
        if self.backend == "local":
            units = _local_units.get(self._units_key(deployed.code_root))
            if units is None:
                raise WiseFuseError(f"unit function {deployed.function!r} is not deployed")
            return units.invoke(deployed.function, event)
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
        from wisefuse_plugins.runtime.backends.units import LocalUnits

        # one function per (spec, code root, store, environment): the local Lambda's function
        # names are process-wide, and the same spec under another root is other code
        key = self._units_key(str(root))
        ident = hashlib.sha256(repr((sha, *key)).encode()).hexdigest()[:10]
        name = safe_name(f"{workflow}-{spec.unit}-{ident}")
        path = self._spec_file(spec, sha)
        unit = Unit(id=name, stages=[s.id for s in spec.stages], memory_mb=memory_mb, arch=arch)
        with _lock:
            lam = _shared_local_lambda(self.local_options)
            units = _local_units.get(key)
            if units is None:
                units = _local_units[key] = LocalUnits(
                    lam, self.store_url, root, environment=self.environment
                )
            units.deploy(unit, path)
        return Deployed(name, sha, str(root))

    def _units_key(self, code_root: str) -> tuple[Any, ...]:
        lam = _shared().options_key(_local_lambda_options(self.local_options))
        return (lam, self.store_url, code_root, tuple(sorted(self.environment.items())))

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
