"""Workflows and moto helpers shared by the AWS tests."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from wisefuse_plugins.ir import Collect, Const, Item, Stage, Workflow, callable_ref, derive_edges
from wisefuse_plugins.plan.schema import Plan, Unit, hashes_of

from .app import aws_app

APP_ROOT = Path(aws_app.__file__).resolve().parent
REGION = "us-east-1"


def _stage(fn, sid: str | None = None, **kw) -> Stage:
    return Stage(id=sid or fn.__name__, callable=callable_ref(fn, APP_ROOT), **kw)


def twin_workflow(n: int = 5) -> Workflow:
    """make_a -> square (mapped), make_b -> negate (mapped); join collects both."""
    stages = [
        _stage(aws_app.make, "make_a", bindings={"n": Const(value=n)}),
        _stage(aws_app.square, bindings={"x": Item(stage="make_a")}, parallelism=n),
        _stage(aws_app.make, "make_b", bindings={"n": Const(value=n)}),
        _stage(aws_app.negate, bindings={"x": Item(stage="make_b")}, parallelism=n),
        _stage(aws_app.join, bindings={"a": Collect(stage="square"), "b": Collect(stage="negate")}),
    ]
    return Workflow(
        name="twin", stages=stages, edges=derive_edges(stages), source={"root": str(APP_ROOT)}
    )


def units_plan(wf: Workflow, groups: list[list[str]], bundle: dict[str, int] | None = None) -> Plan:
    bundle = bundle or {}
    units = [Unit(id="-".join(g), stages=g, bundle_size=bundle.get(g[0], 1)) for g in groups]
    return Plan(workflow=wf.name, units=units, code_hashes=hashes_of(wf))


def moto_api(base: str, path: str, body: dict[str, Any]) -> bytes:
    request = urllib.request.Request(
        f"{base}/moto-api/{path}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.read()


@contextmanager
def executing_state_machines(base: str, lambda_results: list[dict[str, Any]]) -> Iterator[None]:
    """moto's own Step Functions interpreter, with canned Lambda answers (no Docker).

    ``lambda_results`` are returned, in order, by the Lambda calls the machine makes. The
    server's configuration is restored afterwards, so later tests see plain moto again.
    """
    moto_api(
        base,
        "config",
        {"lambda": {"use_docker": False}, "stepfunctions": {"execute_state_machine": True}},
    )
    try:
        moto_api(
            base,
            "static/lambda-simple/response",
            {"results": [json.dumps(r) for r in lambda_results], "region": REGION},
        )
        yield
    finally:
        moto_api(
            base,
            "config",
            {"lambda": {"use_docker": True}, "stepfunctions": {"execute_state_machine": False}},
        )


class FakeContext:
    """What the Lambda Python runtime passes as ``context`` (the fields the handler may read)."""

    def __init__(self, memory_mb: int = 1769, name: str = "wf-unit") -> None:
        self.memory_limit_in_mb = memory_mb
        self.function_name = name
        self.function_version = "1"
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:{name}:1"
        self.aws_request_id = "00000000-0000-0000-0000-000000000000"
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "2026/01/01/[1]abc"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000
