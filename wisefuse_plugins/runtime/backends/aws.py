"""Run plan units as AWS Lambda functions: one function per unit, deployed and invoked with boto3.

``deploy`` makes the function match the plan and touches nothing else: it compares the
function's current configuration and ``CodeSha256`` with what the unit needs and calls
``UpdateFunctionCode`` / ``UpdateFunctionConfiguration`` only for what differs (a memory
change re-uploads no code), then publishes a version (Lambda returns the existing one
when nothing changed) and points the alias ``plan-<hash>`` at it, so a state machine or
an operator can pin the exact plan.

``invoke`` is a synchronous call with ``LogType=Tail``: the ``REPORT`` line in the log
tail gives the billed duration, memory and init time, hence the cost of the invocation.
Throttling is retried with exponential backoff. A reply is success only when it is a
wisefuse handler response with ``"ok": true``: a ``FunctionError``, or anything else in
the payload (moto without Docker answers 200 with ``error running docker ...``), is a
failure. Events are small by design (data travels through the store); one over Lambda's
synchronous payload limit is refused before any call.

boto3 is imported when a backend is created (the ``aws`` extra), never with the package.
"""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.ir.names import safe_name
from wisefuse_plugins.plan.limits import MAX_SYNC_REQUEST_BYTES, MAX_TIMEOUT_S
from wisefuse_plugins.plan.schema import Unit
from wisefuse_plugins.runtime.handler import ENV_ROOT, ENV_SPEC, ENV_STORE
from wisefuse_plugins.runtime.invoker import Invoked
from wisefuse_plugins.runtime.lambda_report import last_report as parse_report
from wisefuse_plugins.runtime.packaging import (
    HANDLER,
    RUNTIME,
    Package,
    Packager,
    code_task_root,
    spec_task_path,
)
from wisefuse_plugins.runtime.s3store import boto3_module
from wisefuse_plugins.runtime.spec import UnitSpec

#: Error codes AWS uses for "slow down" (Lambda's is TooManyRequestsException, HTTP 429).
THROTTLE_CODES = frozenset(
    {"TooManyRequestsException", "ThrottlingException", "Throttling", "RequestLimitExceeded"}
)
#: How long a synchronous invoke may take: the longest function plus a margin.
READ_TIMEOUT_S = int(MAX_TIMEOUT_S) + 30


class AwsError(WiseFuseError):
    """An AWS call failed; ``code`` is AWS's error code (empty for client-side errors)."""

    def __init__(self, message: str, *, code: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code


class EventTooLarge(WiseFuseError):
    """An invocation event over Lambda's synchronous payload limit."""


def function_name(prefix: str, unit_id: str) -> str:
    """``<prefix>-<unit>``, made Lambda-safe and at most 64 characters (hashed if longer)."""
    return safe_name(f"{prefix}-{unit_id}")


def error_code(err: BaseException) -> str:
    response = getattr(err, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def is_throttle(err: BaseException) -> bool:
    response = getattr(err, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return error_code(err) in THROTTLE_CODES or status == 429


def default_client_factory(region: str | None) -> Callable[[str], Any]:
    """Clients whose retries we control (botocore's own are off) and whose reads outlast 900 s."""

    def make(service: str) -> Any:
        boto3 = boto3_module("the AWS backend")
        from botocore.config import Config

        config = Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            read_timeout=READ_TIMEOUT_S,
            connect_timeout=10,
        )
        from botocore.exceptions import NoRegionError

        try:
            return boto3.client(service, region_name=region, config=config)
        except NoRegionError:
            raise AwsError(
                "no AWS region is configured",
                hint="pass one (wisefuse deploy --region eu-west-1, or region_name=...), "
                "or set AWS_DEFAULT_REGION or a region in ~/.aws/config",
            ) from None

    return make


@dataclass
class FunctionChange:
    """What ``deploy`` did to one function; ``arn`` is the published version's (qualified)."""

    unit: str
    function: str
    arn: str = ""
    created: bool = False
    code_updated: bool = False
    config_updated: list[str] = field(default_factory=list)
    version: str = ""
    alias: str | None = None

    @property
    def changed(self) -> bool:
        return self.created or self.code_updated or bool(self.config_updated)


@dataclass
class _Deployed:
    name: str
    arn: str
    version: str
    memory_mb: int
    arch: str


class AwsLambdaBackend:
    """The executor's :class:`~wisefuse_plugins.runtime.executor.Invoker` on AWS Lambda.

    ``layers``: layer version ARNs for every function, or a mapping ``arch -> ARNs``
    (compiled dependencies such as pydantic-core differ between x86_64 and arm64).
    ``timeout_s``: one timeout for all, or per unit id. ``code_root``: the user's source
    root (default: the workflow's ``source.root``). ``client_factory(service)`` gives
    boto3 clients (tests pass one bound to a moto server). ``on_this_machine``: the
    clients talk to the local Lambda service, whose functions run here and may share a
    folder store (on AWS the store must be S3).
    """

    def __init__(
        self,
        *,
        role_arn: str,
        store_url: str,
        prefix: str = "wf",
        region: str | None = None,
        layers: Sequence[str] | Mapping[str, Sequence[str]] = (),
        timeout_s: int | Mapping[str, int] = int(MAX_TIMEOUT_S),
        code_root: str | Path | None = None,
        extra_roots: Sequence[str | Path] = (),
        plan_hash: str | None = None,
        environment: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
        client_factory: Callable[[str], Any] | None = None,
        on_this_machine: bool = False,
        max_attempts: int = 8,
        base_delay_s: float = 0.25,
        max_delay_s: float = 20.0,
        jitter: bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not on_this_machine and not store_url.startswith("s3://"):
            raise WiseFuseError(
                f"functions on AWS need an S3 store, got {store_url!r}",
                hint="pass --store s3://bucket/prefix",
            )
        self.role_arn = role_arn
        self.store_url = store_url
        self.prefix = prefix
        self.layers = layers
        self.timeout_s = timeout_s
        self.code_root = Path(code_root) if code_root is not None else None
        self.extra_roots = tuple(Path(p) for p in extra_roots)
        self.plan_hash = plan_hash
        self.environment = dict(environment or {})
        self.tags = dict(tags or {})
        self.max_attempts = max(1, max_attempts)
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.jitter = jitter
        self.sleep = sleep
        self.client = (client_factory or default_client_factory(region))("lambda")
        self.changes: dict[str, FunctionChange] = {}
        self.calls: list[tuple[str, str]] = []  # (operation, function) of every mutating call
        self.throttled = 0  # throttled attempts that were retried
        self._deployed: dict[str, _Deployed] = {}
        self._packager: Packager | None = None

    # -- AWS calls ----------------------------------------------------------------------

    def _delay(self, attempt: int) -> float:
        delay = min(self.max_delay_s, self.base_delay_s * 2**attempt)
        return delay * (0.5 + random.random() / 2) if self.jitter else delay

    def _call(self, operation: str, **kwargs: Any) -> Any:
        """One API call: throttling retried with exponential backoff, errors made readable."""
        from botocore.exceptions import BotoCoreError, ClientError

        target = str(kwargs.get("FunctionName", ""))
        if not operation.startswith(("get_", "list_", "invoke")):
            self.calls.append((operation, target))
        for attempt in range(self.max_attempts):
            try:
                return getattr(self.client, operation)(**kwargs)
            except ClientError as err:
                if is_throttle(err) and attempt + 1 < self.max_attempts:
                    self.throttled += 1
                    self.sleep(self._delay(attempt))
                    continue
                message = err.response.get("Error", {}).get("Message", str(err))
                raise AwsError(
                    f"Lambda {operation} on {target or '?'} failed: {error_code(err)}: {message}",
                    code=error_code(err),
                    hint="throttled: raise the account's concurrency quota or lower max_concurrency"
                    if is_throttle(err)
                    else None,
                ) from None
            except BotoCoreError as err:
                raise AwsError(
                    f"Lambda {operation} on {target or '?'} failed: {err}",
                    code=type(err).__name__,  # e.g. EndpointConnectionError: nothing was sent
                    hint="check the AWS credentials and region (AWS_PROFILE, AWS_DEFAULT_REGION)",
                ) from None
        raise AssertionError("unreachable")

    def _wait(self, waiter: str, name: str) -> None:
        from botocore.exceptions import WaiterError

        try:
            self.client.get_waiter(waiter).wait(
                FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 300}
            )
        except WaiterError as err:
            raise AwsError(f"function {name} did not become ready: {err}") from None

    # -- deploy ---------------------------------------------------------------------------

    def function_name(self, unit_id: str) -> str:
        return function_name(self.prefix, unit_id)

    def _layers_for(self, arch: str) -> list[str]:
        if isinstance(self.layers, Mapping):
            return list(self.layers.get(arch, ()))
        return list(self.layers)

    def _timeout_for(self, unit_id: str) -> int:
        if isinstance(self.timeout_s, Mapping):
            return int(self.timeout_s.get(unit_id, MAX_TIMEOUT_S))
        return int(self.timeout_s)

    def desired_configuration(self, unit: Unit) -> dict[str, Any]:
        """The configuration fields a unit's function must have (UpdateFunctionConfiguration names)."""
        env = {
            **self.environment,
            ENV_SPEC: spec_task_path(unit.id),
            ENV_ROOT: code_task_root(),
            ENV_STORE: self.store_url,
        }
        return {
            "Role": self.role_arn,
            "Handler": HANDLER,
            "Runtime": RUNTIME,
            "MemorySize": unit.memory_mb,
            "Timeout": self._timeout_for(unit.id),
            "Environment": {"Variables": env},
            "Layers": self._layers_for(unit.arch),
        }

    def package(self, unit: Unit, spec: bytes) -> Package:
        if self._packager is None:
            if self.code_root is None:
                raise WiseFuseError(
                    f"cannot package unit {unit.id!r}: the AWS backend has no code_root",
                    hint="pass code_root= (the folder the stages' source paths are relative to)",
                )
            self._packager = Packager(self.code_root, self.extra_roots)
        return self._packager.build({unit.id: spec})

    def _current(self, name: str) -> dict[str, Any] | None:
        try:
            return self._call("get_function_configuration", FunctionName=name)
        except AwsError as err:
            if err.code == "ResourceNotFoundException":
                return None
            raise

    @staticmethod
    def _differences(current: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        have = {
            "Role": current.get("Role"),
            "Handler": current.get("Handler"),
            "Runtime": current.get("Runtime"),
            "MemorySize": current.get("MemorySize"),
            "Timeout": current.get("Timeout"),
            "Environment": {"Variables": (current.get("Environment") or {}).get("Variables", {})},
            "Layers": [layer["Arn"] for layer in current.get("Layers") or []],
        }
        return {k: v for k, v in desired.items() if have.get(k) != v}

    def deploy(self, unit: Unit, spec_path: Path) -> None:
        """Create or update the unit's function to match the plan, then publish a version."""
        name = self.function_name(unit.id)
        spec = Path(spec_path).read_bytes()
        workflow = UnitSpec.model_validate_json(spec).workflow
        pkg = self.package(unit, spec)
        desired = self.desired_configuration(unit)
        change = FunctionChange(unit=unit.id, function=name)
        current = self._current(name)
        tags = {
            **self.tags,
            "wisefuse:workflow": workflow[:256],
            "wisefuse:unit": unit.id,
        }
        if current is None:
            try:
                created = self._call(
                    "create_function",
                    FunctionName=name,
                    Code={"ZipFile": pkg.data},
                    Architectures=[unit.arch],
                    Description=f"wisefuse unit {unit.id} of workflow {workflow}"[:256],
                    Tags=tags,
                    Publish=False,
                    **desired,
                )
            except AwsError as err:
                if err.code != "ResourceConflictException":
                    raise
                current = self._current(name)  # another deployer created it meanwhile
                if current is None:
                    raise
            else:
                change.created = True
                change.arn = created["FunctionArn"]
                self._wait("function_active_v2", name)
        if current is not None:
            change.arn = current["FunctionArn"]
            if current.get("CodeSha256") != pkg.sha256 or current.get("Architectures") != [
                unit.arch
            ]:
                self._call(
                    "update_function_code",
                    FunctionName=name,
                    ZipFile=pkg.data,
                    Architectures=[unit.arch],
                )
                change.code_updated = True
                self._wait("function_updated_v2", name)
            updates = self._differences(current, desired)
            if updates:
                self._call("update_function_configuration", FunctionName=name, **updates)
                change.config_updated = sorted(updates)
                self._wait("function_updated_v2", name)
        description = f"wisefuse plan {self.plan_hash}" if self.plan_hash else "wisefuse"
        published = self._call(
            "publish_version", FunctionName=name, CodeSha256=pkg.sha256, Description=description
        )
        change.version = str(published["Version"])
        change.arn = published.get("FunctionArn") or f"{change.arn}:{change.version}"
        if self.plan_hash:
            change.alias = self._point_alias(name, f"plan-{self.plan_hash}", change.version)
        self.changes[unit.id] = change
        self._deployed[unit.id] = _Deployed(
            name, change.arn, change.version, unit.memory_mb, unit.arch
        )

    def _point_alias(self, name: str, alias: str, version: str) -> str:
        try:
            current = self._call("get_alias", FunctionName=name, Name=alias)
        except AwsError as err:
            if err.code != "ResourceNotFoundException":
                raise
            self._call("create_alias", FunctionName=name, Name=alias, FunctionVersion=version)
        else:
            if current.get("FunctionVersion") != version:
                self._call("update_alias", FunctionName=name, Name=alias, FunctionVersion=version)
        return alias

    @property
    def skipped_files(self) -> list[str]:
        """Files of the code root left out of the zips (too large for a zip: use the store)."""
        return list(self._packager.skipped) if self._packager else []

    @property
    def function_arns(self) -> dict[str, str]:
        """Unit id -> ARN of the published version this backend deployed (qualified)."""
        return {u: d.arn for u, d in self._deployed.items()}

    # -- invoke ---------------------------------------------------------------------------

    def invoke(self, unit_id: str, event: dict[str, Any]) -> Invoked:
        payload = json.dumps(event, separators=(",", ":"), allow_nan=False).encode()
        if len(payload) > MAX_SYNC_REQUEST_BYTES:
            raise EventTooLarge(
                f"the event for unit {unit_id!r} is {len(payload):,} bytes; Lambda's synchronous "
                f"limit is {MAX_SYNC_REQUEST_BYTES:,}",
                hint="an event carries run ids, instance numbers and at most "
                "runtime.passing.EVENT_BYTES of values passed by value; pass larger data "
                "through the store",
            )
        deployed = self._deployed.get(unit_id)
        kwargs: dict[str, Any] = {
            "FunctionName": deployed.name if deployed else self.function_name(unit_id),
            "InvocationType": "RequestResponse",
            "LogType": "Tail",
            "Payload": payload,
        }
        if deployed:
            kwargs["Qualifier"] = deployed.version
        response = self._call("invoke", **kwargs)
        return read_invoke_response(
            response,
            function=kwargs["FunctionName"],
            arch=deployed.arch if deployed else "x86_64",
        )


def read_invoke_response(response: Mapping[str, Any], *, function: str, arch: str) -> Invoked:
    """Turn Lambda's invoke answer into an :class:`Invoked`: success only for ``ok: true``."""
    body = response["Payload"]
    raw = body.read() if hasattr(body, "read") else bytes(body or b"")
    text = raw.decode("utf-8", errors="replace")
    log = base64.b64decode(response.get("LogResult") or "").decode("utf-8", errors="replace")
    report = parse_report(log)
    try:
        payload: Any = json.loads(text)
    except ValueError:
        payload = None
    error: dict[str, Any] | None = None
    function_error = response.get("FunctionError")
    if function_error:
        info = payload if isinstance(payload, dict) else {}
        error = {
            "stage": "<lambda>",
            "instance": None,
            "type": str(info.get("errorType") or f"Lambda.{function_error}"),
            "message": str(info.get("errorMessage") or text[:2000]),
            "traceback": "\n".join(info.get("stackTrace") or []) if info else "",
        }
    elif not (isinstance(payload, dict) and isinstance(payload.get("ok"), bool)):
        error = {
            "stage": "<lambda>",
            "instance": None,
            "type": "InvalidResponse",
            "message": f"{function} did not answer with a wisefuse handler response "
            f"(status {response.get('StatusCode')}): {text[:500]!r}",
            "traceback": "",
        }
    elif report is not None and report.status in {"timeout", "error"}:
        error = {"stage": "<lambda>", "instance": None, "type": f"Lambda.{report.status}"}
        error["message"] = f"{function} ended with status {report.status}"
    result = payload if error is None else {"ok": False, "error": error}
    invoked = Invoked(payload=result, error=error, log_tail=log)
    if report is not None:
        from wisefuse_plugins.plan.pricing import lambda_cost

        invoked.duration_ms = report.duration_ms
        invoked.billed_ms = report.billed_ms
        invoked.init_ms = report.init_ms or 0.0
        invoked.cold = report.init_ms is not None
        invoked.max_memory_mb = report.max_memory_mb or 0.0
        invoked.cost_usd = lambda_cost(report.billed_ms, report.memory_mb, arch)
    return invoked
