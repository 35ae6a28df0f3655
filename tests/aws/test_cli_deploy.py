"""``wisefuse deploy`` against moto, and its one-line errors."""

from __future__ import annotations

import pytest

from wisefuse_plugins.cli import main
from wisefuse_plugins.ir import dump
from wisefuse_plugins.plan.schema import dump_plan

from ..runtime.toyflows import PLANS, ROOT, plan, toy_workflow


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out = capsys.readouterr()
    return info.value.code or 0, out.out, out.err


@pytest.fixture
def files(tmp_path):
    wf = toy_workflow()
    ir = dump(wf, tmp_path / "toy.ir.json")
    plan_file = dump_plan(plan(wf, *PLANS["bundles-of-2"]), tmp_path / "toy.plan.json")
    return str(ir), str(plan_file)


def test_deploy_command(capsys, files, role_arn, bucket, prefix, client):
    ir, plan_file = files
    args = ["deploy", ir, plan_file, "--role", role_arn, "--store", f"s3://{bucket}/runs"]
    args += ["--prefix", prefix, "--region", "us-east-1", "--code-root", str(ROOT)]
    code, out, err = run(capsys, *args)
    assert code == 0, err
    assert "square-middle" in out and "created" in out and "state machine (created)" in out
    names = {f["FunctionName"] for f in client("lambda").list_functions()["Functions"]}
    assert {f"{prefix}-make", f"{prefix}-total"} <= names
    code, out, _ = run(capsys, *args, "--no-state-machine")
    assert code == 0 and "unchanged" in out and "state machine" not in out


def test_deploy_errors_are_one_line(capsys, files, role_arn):
    ir, plan_file = files
    code, _, err = run(capsys, "deploy", ir, plan_file, "--role", role_arn, "--store", "/tmp/x")
    assert code == 2 and "must be an S3 URL" in err and "Traceback" not in err
    code, _, err = run(
        capsys, "deploy", ir, ir, "--role", role_arn, "--store", "s3://bucket/x"
    )  # an IR file where the plan belongs
    assert code == 2 and "error:" in err and "Traceback" not in err
