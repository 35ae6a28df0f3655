"""Deploy a plan to AWS: one Lambda function per unit and, optionally, a Step Functions machine.

It sits above both the runtime (the AWS backend that deploys functions) and the emitters
(the Step Functions definition), so neither of those imports the other.

Idempotent: deploying the same plan again changes nothing; deploying an updated plan
changes only the functions whose code or configuration differ (see
:class:`~wisefuse_plugins.runtime.backends.aws.AwsLambdaBackend`) and the state machine
only if its definition differs. Every function gets a version and the alias
``plan-<hash>``; the state machine invokes those versions, so a later deploy never
changes a machine's behaviour behind its back.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wisefuse_plugins.emitters.stepfunctions import check_emittable, to_asl
from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.ir import Workflow
from wisefuse_plugins.ir.names import safe_name
from wisefuse_plugins.plan.schema import Plan, check_plan, plan_to_json
from wisefuse_plugins.runtime.backends.aws import (
    AwsError,
    AwsLambdaBackend,
    FunctionChange,
    default_client_factory,
    error_code,
)
from wisefuse_plugins.runtime.executor import prepare

MAX_STATE_MACHINE_NAME = 80


@dataclass
class DeployResult:
    """What a deploy made: per unit the function, its published version and what changed."""

    plan_hash: str
    functions: dict[str, FunctionChange]
    state_machine_arn: str | None = None
    state_machine_change: str | None = None  # "created" | "updated" | "unchanged"
    asl: dict[str, Any] | None = None
    skipped_files: list[str] = field(default_factory=list)

    @property
    def function_arns(self) -> dict[str, str]:
        """Unit id -> qualified ARN of the published version."""
        return {u: c.arn for u, c in self.functions.items()}

    @property
    def versions(self) -> dict[str, str]:
        return {u: c.version for u, c in self.functions.items()}

    @property
    def changed_units(self) -> list[str]:
        return sorted(u for u, c in self.functions.items() if c.changed)


def plan_hash(workflow: Workflow, plan: Plan) -> str:
    """12 hex digits naming a (workflow, plan): the same plan and code give the same hash."""
    text = json.dumps({"workflow": workflow.name, "plan": json.loads(plan_to_json(plan))})
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def state_machine_name(prefix: str, workflow: Workflow) -> str:
    return safe_name(f"{prefix}-{workflow.name}", max_length=MAX_STATE_MACHINE_NAME)


def deploy_plan(
    workflow: Workflow,
    plan: Plan,
    *,
    role_arn: str,
    store_url: str,
    prefix: str = "wf",
    region: str | None = None,
    layers: Sequence[str] | Mapping[str, Sequence[str]] = (),
    state_machine: bool = True,
    state_machine_role_arn: str | None = None,
    state_machine_type: str = "STANDARD",
    max_concurrency: int = 16,
    code_root: str | Path | None = None,
    extra_roots: Sequence[str | Path] = (),
    timeout_s: int | Mapping[str, int] = 900,
    environment: Mapping[str, str] | None = None,
    client_factory: Callable[[str], Any] | None = None,
    workdir: Path | None = None,
    build_layers: bool = False,
) -> DeployResult:
    """Deploy every unit of ``plan`` as a Lambda function, then the state machine.

    ``build_layers``: package the units as ``wisefuse package`` does (a dependency layer
    per architecture resolved from what the code imports, source packages it imports from
    outside the code root added to the zips) and publish each layer, unless one with the
    same content is already published; ``layers`` are then added after them.
    ``role_arn``: the functions' execution role (S3 access to the store prefix, logs).
    ``state_machine_role_arn``: the role Step Functions assumes to invoke them (default:
    ``role_arn``, which must then trust ``states.amazonaws.com`` too). Checks the plan,
    and that Step Functions can run it, before any AWS call.
    """
    check_plan(plan, workflow)
    if state_machine:
        check_emittable(workflow, plan)
    digest = plan_hash(workflow, plan)
    factory = client_factory or default_client_factory(region)
    if build_layers:
        from wisefuse_plugins.runtime.artifacts import package_plan, publish_layer

        built = package_plan(workflow, plan, code_root=Path(code_root) if code_root else None)
        extra_roots = [*extra_roots, *built.extra_roots]
        given = layers
        layers = {}
        for arch, layer in built.layers.items():
            more = given.get(arch, ()) if isinstance(given, Mapping) else given
            arn = _published(factory("lambda"), f"{prefix}-deps-{arch}", layer, publish_layer)
            layers[arch] = [arn, *more]
    backend = AwsLambdaBackend(
        role_arn=role_arn,
        store_url=store_url,
        prefix=prefix,
        layers=layers,
        timeout_s=timeout_s,
        code_root=code_root if code_root is not None else workflow.source.root,
        extra_roots=extra_roots,
        plan_hash=digest,
        environment=environment,
        tags={"wisefuse:plan": digest},
        client_factory=factory,
    )
    with tempfile.TemporaryDirectory(prefix="wisefuse-units-") as tmp:
        specs = prepare(workflow, plan, workdir or Path(tmp))
        for unit in plan.units:
            backend.deploy(unit, specs[unit.id])
    result = DeployResult(
        plan_hash=digest,
        functions=dict(backend.changes),
        skipped_files=backend.skipped_files,
    )
    if state_machine:
        asl = to_asl(
            workflow,
            plan,
            backend.function_arns,
            max_concurrency=max_concurrency,
            comment=f"wisefuse: workflow {workflow.name}, plan {digest}",
        )
        arn, change = put_state_machine(
            factory("stepfunctions"),
            state_machine_name(prefix, workflow),
            asl,
            role_arn=state_machine_role_arn or role_arn,
            machine_type=state_machine_type,
            tags={"wisefuse:plan": digest, "wisefuse:workflow": workflow.name[:256]},
        )
        result.asl, result.state_machine_arn, result.state_machine_change = asl, arn, change
    return result


def put_state_machine(
    client: Any,
    name: str,
    asl: Mapping[str, Any],
    *,
    role_arn: str,
    machine_type: str = "STANDARD",
    tags: Mapping[str, str] | None = None,
) -> tuple[str, str]:
    """Create the state machine ``name`` or update it if its definition or role differ."""
    from botocore.exceptions import BotoCoreError, ClientError

    definition = json.dumps(asl, indent=2, sort_keys=True)
    try:
        existing = None
        for page in client.get_paginator("list_state_machines").paginate():
            for sm in page.get("stateMachines", []):
                if sm["name"] == name:
                    existing = sm["stateMachineArn"]
        if existing is None:
            created = client.create_state_machine(
                name=name,
                definition=definition,
                roleArn=role_arn,
                type=machine_type,
                tags=[{"key": k, "value": v} for k, v in (tags or {}).items()],
            )
            return created["stateMachineArn"], "created"
        current = client.describe_state_machine(stateMachineArn=existing)
        if json.loads(current["definition"]) == json.loads(definition) and (
            current.get("roleArn") == role_arn
        ):
            return existing, "unchanged"
        client.update_state_machine(
            stateMachineArn=existing, definition=definition, roleArn=role_arn
        )
        return existing, "updated"
    except ClientError as err:
        message = err.response.get("Error", {}).get("Message", str(err))
        raise AwsError(
            f"Step Functions refused state machine {name!r}: {error_code(err)}: {message}",
            code=error_code(err),
        ) from None
    except BotoCoreError as err:
        raise AwsError(
            f"Step Functions call for {name!r} failed: {err}",
            hint="check the AWS credentials and region",
        ) from None


def start_run(client: Any, state_machine_arn: str, run_id: str) -> str:
    """Start one execution of a deployed plan; returns the execution ARN."""
    from wisefuse_plugins.runtime.store import check_run_id

    check_run_id(run_id)
    if len(run_id) > 80:
        raise WiseFuseError(f"run id {run_id!r} is longer than 80 characters")
    answer = client.start_execution(
        stateMachineArn=state_machine_arn, name=run_id, input=json.dumps({"run_id": run_id})
    )
    return answer["executionArn"]


def _published(client: Any, name: str, layer: Any, publish: Any) -> str:
    """``publish(client, name, layer)`` with AWS's refusals as one clear error."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return publish(client, name, layer)
    except ClientError as err:
        message = err.response.get("Error", {}).get("Message", str(err))
        raise AwsError(
            f"Lambda refused layer {name!r}: {error_code(err)}: {message}", code=error_code(err)
        ) from None
    except BotoCoreError as err:
        raise AwsError(
            f"Lambda publish_layer_version of {name} failed: {err}",
            hint="check the AWS credentials and region (AWS_PROFILE, AWS_DEFAULT_REGION)",
        ) from None
