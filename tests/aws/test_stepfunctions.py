"""The Step Functions emitter: structure, limits, moto's create_state_machine, and execution.

moto's plain backend stores a definition without reading it; its interpreter (the
``execute_state_machine`` mode, derived from LocalStack's) parses and runs it. The runs
here use canned Lambda answers (moto cannot run our code without Docker): they check the
plumbing of the machine (run ids, chunk lists, Map items, Parallel merges), while
test_handler_s3.py checks what each invocation does with such events.
"""

from __future__ import annotations

import json
import time

import networkx as nx
import pytest

from wisefuse_plugins.deploy import deploy_plan, start_run
from wisefuse_plugins.emitters.stepfunctions import (
    LAMBDA_INVOKE,
    EmitError,
    _decompose,
    state_names,
    to_asl,
)
from wisefuse_plugins.ir import ConstItem, Stage, Workflow, callable_ref, derive_edges
from wisefuse_plugins.plan.lower import chunk_slot
from wisefuse_plugins.plan.schema import Plan, Unit, hashes_of, single_stage_plan

from ..runtime.toy import toy_app
from ..runtime.toyflows import PLANS, ROOT, plan, toy_workflow
from .awsflows import executing_state_machines, twin_workflow, units_plan
from .conftest import REGION

ROLE = "arn:aws:iam::123456789012:role/sfn"


def fake_arns(p: Plan) -> dict[str, str]:
    return {u.id: f"arn:aws:lambda:{REGION}:123456789012:function:wf-{u.id}:1" for u in p.units}


def test_bundled_unit_becomes_a_map_over_the_producers_chunks():
    wf = toy_workflow(retries=2)
    p = plan(wf, *PLANS["bundles-of-2"])
    asl = to_asl(wf, p, fake_arns(p), max_concurrency=7)
    states = asl["States"]
    assert asl["StartAt"] == "Start" and states["Start"]["Type"] == "Pass"
    assert states["Start"]["Parameters"] == {"run_id.$": "$.run_id"}
    # make -> square-middle and config are independent: a Parallel, then total
    parallel = states[states["Start"]["Next"]]
    assert parallel["Type"] == "Parallel" and parallel["Next"] == "total"
    left, right = parallel["Branches"]
    assert list(left["States"]) == ["make", "square-middle (bundles)"]
    assert list(right["States"]) == ["config"]
    make = left["States"]["make"]
    assert make["Resource"] == LAMBDA_INVOKE
    assert make["Parameters"]["Payload"] == {"run_id.$": "$.run_id", "raise_errors": True}
    slot = chunk_slot("square-middle")
    assert make["ResultSelector"] == {f"{slot}.$": f"$.Payload.chunks.{slot}"}
    assert make["ResultPath"] == "$.u_make"
    mapped = left["States"]["square-middle (bundles)"]
    assert mapped["Type"] == "Map" and mapped["MaxConcurrency"] == 7
    assert mapped["ItemsPath"] == f"$.u_make.{slot}"
    assert mapped["ItemSelector"] == {"run_id.$": "$.run_id", "instances.$": "$$.Map.Item.Value"}
    inner = mapped["ItemProcessor"]["States"]["square-middle"]
    assert inner["Parameters"]["Payload"] == {
        "run_id.$": "$.run_id",
        "instances.$": "$.instances",
        "raise_errors": True,
    }
    assert inner["Parameters"]["FunctionName"].endswith("wf-square-middle:1")
    # retries: Lambda service errors everywhere; task failures as the stage allows (middle: 2)
    assert "Lambda.TooManyRequestsException" in inner["Retry"][0]["ErrorEquals"]
    assert inner["Retry"][1] == {
        "ErrorEquals": ["States.ALL"],
        "IntervalSeconds": 1,
        "MaxAttempts": 2,
        "BackoffRate": 2.0,
    }
    assert len(make["Retry"]) == 1
    assert states["total"]["End"] is True and states["total"]["ResultPath"] is None
    assert parallel["ResultSelector"] == {"merged.$": "$[0]"}
    json.dumps(asl)  # plain JSON


def test_state_names_unique_and_short_with_long_unit_ids():
    wf = toy_workflow()
    long = {"make": "m" * 64, "square": "s" * 63 + "q", "middle": "x" * 64}
    groups = [["make"], ["square", "middle"], ["config"], ["total"]]
    units = [
        Unit(id=long.get(g[0], g[0]), stages=g, bundle_size=2 if g[0] == "square" else 1)
        for g in groups
    ]
    p = Plan(workflow="toy", units=units, code_hashes=hashes_of(wf))
    names = state_names(to_asl(wf, p, fake_arns(p)))
    assert len(names) == len(set(names)) and all(len(n) <= 80 for n in names)
    # a unit called like a fixed state does not collide with it
    p2 = plan(wf, [["make"], ["square", "middle"], ["config"], ["total"]])
    p2 = p2.model_copy(
        update={"units": [p2.units[0].model_copy(update={"id": "Start"}), *p2.units[1:]]}
    )
    names = state_names(to_asl(wf, p2, fake_arns(p2)))
    assert len(names) == len(set(names)) and "Start 2" in names


def test_static_chunks_live_in_the_first_state():
    stages = [
        Stage(
            id="sq",
            callable=callable_ref(toy_app.square, ROOT),
            bindings={"x": ConstItem(values=[1, 2, 3, 4, 5])},
            parallelism=5,
        )
    ]
    wf = Workflow(name="lit", stages=stages, edges=derive_edges(stages))
    p = Plan(workflow="lit", units=[Unit(id="sq", stages=["sq"], bundle_size=2)])
    asl = to_asl(wf, p, fake_arns(p))
    assert asl["States"]["Start"]["Parameters"]["static"] == {"u_sq": [[0, 1], [2, 3], [4]]}
    assert asl["States"]["sq (bundles)"]["ItemsPath"] == "$.static.u_sq"


def test_opaque_stages_are_named_in_the_error():
    wf0 = toy_workflow()
    stages = [*wf0.stages, Stage(id="bash", kind="opaque", opaque_reason="BashOperator")]
    wf = Workflow(
        name="toy", stages=stages, edges=derive_edges(stages, control=[("total", "bash")])
    )
    p = single_stage_plan(wf)
    with pytest.raises(EmitError, match=r"opaque stages 'bash' \(BashOperator\)") as info:
        to_asl(wf, p, fake_arns(p))
    assert "Airflow or Prefect" in (info.value.hint or "")
    with pytest.raises(EmitError, match="no function ARN"):
        to_asl(toy_workflow(), single_stage_plan(toy_workflow()), {})


def test_unit_dag_to_sequences_and_parallel_branches():
    rank = {n: i for i, n in enumerate("abcdef")}

    def steps(edges, nodes="abcd"):
        g = nx.DiGraph()
        g.add_nodes_from(nodes)
        g.add_edges_from(edges)
        return _decompose(g, set(nodes), rank)

    # a diamond: a, then b | c, then d (nothing lost)
    assert steps([("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]) == ["a", [["b"], ["c"]], "d"]
    # two chains joined: (a -> b) | (c), then d
    assert steps([("a", "b"), ("b", "d"), ("c", "d")]) == [[["a", "b"], ["c"]], "d"]
    # "N" shape (a -> c, b -> c, b -> d): not series-parallel; d waits for a too (correct, slower)
    n_shape = steps([("a", "c"), ("b", "c"), ("b", "d")])
    assert n_shape == [[["a"], ["b"]], [["c"], ["d"]]]
    # disconnected units run side by side
    assert steps([], "ab") == [[["a"], ["b"]]]


def test_deploy_creates_then_keeps_then_updates_the_state_machine(client, role_arn, bucket, prefix):
    wf = toy_workflow()
    p = plan(wf, *PLANS["bundles-of-2"])
    kw = dict(role_arn=role_arn, store_url=f"s3://{bucket}/d", prefix=prefix, region=REGION)
    first = deploy_plan(wf, p, code_root=ROOT, **kw)
    assert first.state_machine_change == "created"
    sfn = client("stepfunctions")
    described = sfn.describe_state_machine(stateMachineArn=first.state_machine_arn)
    assert described["name"] == f"{prefix}-toy" and described["type"] == "STANDARD"
    definition = json.loads(described["definition"])
    assert definition == first.asl
    arns = [
        s["Parameters"]["FunctionName"] for s in _all_states(definition) if s.get("Type") == "Task"
    ]
    assert sorted(arns) == sorted(first.function_arns.values())  # pinned versions
    assert deploy_plan(wf, p, code_root=ROOT, **kw).state_machine_change == "unchanged"
    bigger = p.model_copy(
        update={
            "units": [
                u.model_copy(update={"memory_mb": 4096}) if u.id == "make" else u for u in p.units
            ]
        }
    )
    third = deploy_plan(wf, bigger, code_root=ROOT, **kw)
    assert third.state_machine_change == "updated" and third.versions["make"] == "2"
    assert third.state_machine_arn == first.state_machine_arn
    execution = start_run(sfn, first.state_machine_arn, "run-1")
    assert execution.endswith(":run-1")


def test_deploy_refuses_opaque_stages_before_touching_aws(role_arn, bucket, prefix, client):
    wf0 = toy_workflow()
    stages = [*wf0.stages, Stage(id="bash", kind="opaque", opaque_reason="BashOperator")]
    wf = Workflow(
        name="toy", stages=stages, edges=derive_edges(stages, control=[("total", "bash")])
    )
    with pytest.raises(EmitError, match="bash"):
        deploy_plan(
            wf, single_stage_plan(wf), role_arn=role_arn, store_url=f"s3://{bucket}/d",
            prefix=prefix, region=REGION, code_root=ROOT,
        )  # fmt: skip
    names = [f["FunctionName"] for f in client("lambda").list_functions()["Functions"]]
    assert not any(n.startswith(prefix) for n in names)
    # without a state machine, the Python units deploy (the framework runs the opaque task)
    result = deploy_plan(
        wf, single_stage_plan(wf), role_arn=role_arn, store_url=f"s3://{bucket}/d",
        prefix=prefix, region=REGION, code_root=ROOT, state_machine=False,
    )  # fmt: skip
    assert sorted(result.functions) == sorted(s.id for s in wf.python_stages)


def _all_states(asl):
    for state in asl["States"].values():
        yield state
        for branch in state.get("Branches", []):
            yield from _all_states(branch)
        if "ItemProcessor" in state:
            yield from _all_states(state["ItemProcessor"])


def _run(client, asl, run_id: str) -> tuple[dict, list[dict]]:
    sfn = client("stepfunctions")
    name = f"exec-{run_id}"
    arn = sfn.create_state_machine(name=name, definition=json.dumps(asl), roleArn=ROLE)[
        "stateMachineArn"
    ]
    execution = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"run_id": run_id}))
    deadline = time.monotonic() + 30
    while True:
        described = sfn.describe_execution(executionArn=execution["executionArn"])
        if described["status"] != "RUNNING" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    events = sfn.get_execution_history(executionArn=execution["executionArn"], maxResults=1000)
    return described, events["events"]


def _invocations(events) -> list[dict]:
    found = []
    for e in events:
        details = e.get("taskScheduledEventDetails")
        if details:
            found.append(json.loads(details["parameters"]))
    return found


def test_moto_interpreter_runs_the_machine_with_map_items_from_the_producer(aws_env, client):
    wf = toy_workflow(n=5)
    p = plan(wf, *PLANS["bundles-of-2"])
    asl = to_asl(wf, p, fake_arns(p))
    answer = {"ok": True, "chunks": {chunk_slot("square-middle"): [[0, 1], [2, 3], [4]]}}
    with executing_state_machines(aws_env, [answer] * 6):  # 3 units + 3 chunks
        described, events = _run(client, asl, "r-toy")
    assert described["status"] == "SUCCEEDED", described
    calls = _invocations(events)
    by_function: dict[str, list] = {}
    for c in calls:
        by_function.setdefault(c["FunctionName"].split(":")[-2], []).append(c["Payload"])
    assert sorted(p["instances"] for p in by_function["wf-square-middle"]) == [[0, 1], [2, 3], [4]]
    assert all(
        p == {"run_id": "r-toy", "raise_errors": True}
        for f in ("wf-make", "wf-config", "wf-total")
        for p in by_function[f]
    )
    assert all(p["run_id"] == "r-toy" for p in by_function["wf-square-middle"])
    assert json.loads(described["output"])["run_id"] == "r-toy"


def test_moto_interpreter_merges_chunks_from_parallel_branches(aws_env, client):
    wf = twin_workflow(n=5)
    p = units_plan(
        wf, [["make_a"], ["square"], ["make_b"], ["negate"], ["join"]], {"square": 2, "negate": 3}
    )
    asl = to_asl(wf, p, fake_arns(p))
    parallel = asl["States"][asl["States"]["Start"]["Next"]]
    assert parallel["ResultSelector"] == {"merged.$": "States.JsonMerge($[0], $[1], false)"}
    chunks = {
        chunk_slot("square"): [[0, 1], [2, 3], [4]],
        chunk_slot("negate"): [[0, 1, 2], [3, 4]],
    }
    with executing_state_machines(aws_env, [{"ok": True, "chunks": chunks}] * 8):
        described, events = _run(client, asl, "r-twin")
    assert described["status"] == "SUCCEEDED", described
    output = json.loads(described["output"])
    assert set(output) == {"run_id", "u_make_a", "u_make_b"}
    instances = {}
    for c in _invocations(events):
        instances.setdefault(c["FunctionName"].split(":")[-2], []).append(
            c["Payload"].get("instances")
        )
    assert sorted(instances["wf-square"]) == [[0, 1], [2, 3], [4]]
    assert sorted(instances["wf-negate"]) == [[0, 1, 2], [3, 4]]
    assert instances["wf-join"] == [None]
