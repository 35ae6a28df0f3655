"""The conformance corpus: one Prefect flow per feature users write, as they write it.

For every flow file in ``flows/`` (its flow is named after the file; ``corpus_tasks.py``
holds tasks other flows import):

- the adapter's IR (the trace ``@wisefuse`` records on the flow's first call) equals
  ``expected/<name>.ir.json``, in the compact form of :func:`compact` (stage kind and
  callable, bindings as ``"output load"``, ``"item load"``, ``"const 3"``, edges as
  ``"load -> total (one_to_one)"``, what the flow returns). Read the expected file to see
  what the adapter makes of the feature. After a deliberate change,
  ``WISEFUSE_UPDATE_EXPECTED=1 pytest tests/prefect_corpus`` rewrites the expected files
  and fails, so the change is reviewed (``git diff tests/prefect_corpus/expected``) and the
  test is run again before anything passes;
- the flow's input file is then changed (other values, another length), and the decorated
  flow under a fused plan and, where the flow maps, a bundled one returns what the plain
  flow returns on the new input. A flow the adapter cannot plan (a subflow, an async
  flow) runs as it is: the check says why, and the result is the plain one all the same.

One Prefect server (``prefect_env``) and one local Lambda (the block of
``tests/providers/test_prefect_decorator.py``) serve the module; each flow is traced once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.expected import check_expected
from wisefuse_plugins.ir import Binding, Workflow, load
from wisefuse_plugins.plan.schema import Plan, single_stage_plan

from ..plans import chains_plan
from ..providers.test_prefect_decorator import block, home  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
FLOWS = HERE / "flows"
EXPECTED = HERE / "expected"
SHARED = {"corpus_tasks"}  # modules of tasks, no flow of their own
NAMES = sorted(p.stem for p in FLOWS.glob("*.py") if p.stem not in SHARED)

#: The input every flow reads (``path``): traced with the first, run with the second.
TRACED_INPUT = [1, 2, 3]
CHANGED_INPUT = [5, 7, 9, 11]

#: Flows the adapter does not plan, and what the check says about each.
UNPLANNED = {
    "async_flow": "it is async",
    "async_tasks": "it is an async function",
    "cached_across_runs": "reuses results of earlier runs",
    "nested_subflow": "Prefect subflow 'inner'",
    "storage_key": "its result_storage_key",
}
#: Flows whose plain run on the changed input returns a result Prefect cached on the traced one.
CACHED = {"cached_across_runs", "storage_key"}


# --------------------------------------------------------------------------- the IR


def binding_text(b: Binding) -> str:
    """``"output load"``, ``"item load['k']"``, ``"collect scale"``, ``"const 3"``..."""
    data = b.model_dump()
    kind = data["kind"]
    if kind == "const":
        return f"const {json.dumps(data['value'])}"
    if kind == "const_item":
        return f"const_item {json.dumps(data['values'])}"
    key = f"[{data['key']!r}]" if data.get("key") is not None else ""
    return f"{kind} {data['stage']}{key}"


def compact(wf: Workflow, input_path: str) -> dict[str, Any]:
    """The IR as a reader checks it: what each stage runs and where its arguments come from.

    Left out: what depends on the machine or the run (code hashes, timings, run ids, task
    keys); the input file's path reads ``<input>``."""
    stages: dict[str, Any] = {}
    for s in wf.stages:
        entry: dict[str, Any] = {}
        if s.is_python:
            assert s.callable is not None
            entry["python"] = f"{s.callable.path}::{s.callable.qualname}"
        else:
            entry["opaque"] = s.opaque_reason
        if s.name and s.name != s.id:
            entry["name"] = s.name
        if s.mapped:
            entry["map"] = s.parallelism
        entry["how"] = s.meta.get("how")
        entry["args"] = {k: binding_text(v) for k, v in s.bindings.items()}
        if s.retries:
            entry["retries"] = s.retries
        stages[s.id] = entry
    doc: dict[str, Any] = {
        "flow": wf.name,
        "file": wf.source.path,
        "parameters": wf.meta.get("parameters"),
        "stages": stages,
        "edges": [f"{e.src} -> {e.dst} ({e.kind.value}, {e.pattern.value})" for e in wf.edges],
        "returns": wf.meta.get("returns"),
    }
    if "returns_problem" in wf.meta:
        doc["returns_problem"] = wf.meta["returns_problem"]
    text = json.dumps(doc, sort_keys=False).replace(json.dumps(input_path)[1:-1], "<input>")
    return json.loads(text)


# --------------------------------------------------------------------------- traces


@dataclass
class Case:
    name: str
    flow: Any
    input_path: Path
    decorated: Any = None
    traced_value: Any = None
    workflow: Workflow | None = None
    plans: dict[str, Plan] = field(default_factory=dict)
    changed_value: Any = None  # the plain flow's result on CHANGED_INPUT
    refused: str | None = None  # why the adapter does not trace the flow at all


def corpus_plans(wf: Workflow) -> dict[str, Plan]:
    """Every one-to-one chain fused, and the same with mapped instances in bundles of 2
    (when that is another plan: the flow maps)."""
    plans = {"fused": chains_plan(wf)}
    bundled = chains_plan(wf, bundle_size=2)
    if bundled.units != plans["fused"].units:
        plans["bundled"] = bundled
    return plans


def run_flow(flow: Any, path: Path) -> Any:
    """Call the flow on ``path`` (awaiting an async flow's coroutine)."""
    import asyncio
    import inspect

    value = flow(str(path))
    return asyncio.run(value) if inspect.iscoroutine(value) else value


def build_case(name: str, folder: Path, on: Any) -> Case:
    from wisefuse_plugins.adapters.prefect import PrefectAdapterError, load_flow_file, trace_flow
    from wisefuse_plugins.prefect import wisefuse

    flow = load_flow_file(FLOWS / f"{name}.py", name)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(TRACED_INPUT))
    case = Case(name, flow, path)
    if flow.isasync:  # refused before anything runs
        with pytest.raises(PrefectAdapterError) as refused:
            trace_flow(flow, str(path))
        case.refused = str(refused.value)
    case.decorated = wisefuse(flow, block=on)
    case.traced_value = run_flow(case.decorated, path)  # no plan yet: plain, traced
    trace = case.decorated.trace_paths({"path": str(path)})[0]
    if trace.exists():
        case.workflow = load(trace)
        case.plans = corpus_plans(case.workflow)
    path.write_text(json.dumps(CHANGED_INPUT))
    case.changed_value = run_flow(flow, path)  # the plain flow on the new input
    return case


@pytest.fixture(scope="module")
def cases(
    prefect_env: dict[str, str],
    home: Path,  # noqa: F811  (the fixture)
    block: Any,  # noqa: F811  (the fixture)
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Case]]:
    folder = tmp_path_factory.mktemp("prefect-corpus")
    found: dict[str, Case] = {}

    class Lazy(dict):  # type: ignore[type-arg]
        """Builds a case on first use, so ``-k name`` traces only that flow."""

        def __missing__(self, key: str) -> Case:
            if key not in found:
                found[key] = build_case(key, folder, block)
            return found[key]

    yield Lazy()


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name", NAMES)
def test_adapter_ir_matches_the_expected_file(cases: dict[str, Case], name: str) -> None:
    case = cases[name]
    assert case.traced_value == REFERENCE[name](TRACED_INPUT)
    if case.workflow is not None:
        got = compact(case.workflow, str(case.input_path))
    else:
        got = {"flow": case.flow.name, "refused": case.refused}
    check_expected(got, EXPECTED / f"{name}.ir.json", name)


#: The plain result of each flow on an input, written independently of Prefect.
REFERENCE = {
    "async_flow": sum,
    "async_tasks": sum,
    "cached_across_runs": sum,  # on the changed input: the cached (traced) list's sum
    "caching": lambda v: sum(x**3 for x in v),
    "log_prints": sum,
    "map_unmapped": lambda v: sum((x + 3) * 2 for x in v),
    "nested_subflow": lambda v: {"sum": 2 * sum(v), "n": len(v)},
    "other_module": lambda v: sum(4 * x for x in v),
    "persisted": lambda v: sum(v[:2]),
    "retries": lambda v: sum(x * x for x in v),
    "run_logger": sum,
    "storage_key": sum,  # on the changed input: the stored (traced) list's sum
    "submit_futures": lambda v: max(v) - min(v),
    "tags_names": lambda v: -sum(v),
}


#: Flows that map: their bundled plan is another plan than the fused one.
MAPPING = {"map_unmapped", "other_module", "tags_names"}
PLAN_CASES = [(n, "fused") for n in NAMES] + [(n, "bundled") for n in sorted(MAPPING)]


@pytest.mark.parametrize(("name", "kind"), PLAN_CASES, ids=["-".join(c) for c in PLAN_CASES])
def test_planned_run_returns_the_plain_result_on_a_changed_input(
    cases: dict[str, Case],
    name: str,
    kind: str,
    block: Any,  # noqa: F811  (the fixture)
) -> None:
    from wisefuse_plugins.prefect import wisefuse

    case = cases[name]
    changed = TRACED_INPUT if name in CACHED else CHANGED_INPUT
    assert case.changed_value == REFERENCE[name](changed)
    if name in UNPLANNED:
        if case.workflow is None:  # never traced: the call says why it runs plain
            assert UNPLANNED[name] in case.decorated._async_notice()[1]
        else:  # traced, with a stage only Prefect runs: even a plan that fits is not used
            plan = single_stage_plan(case.workflow)
            check = wisefuse(case.flow, plan=plan, block=block).check(str(case.input_path))
            assert not check.planned and UNPLANNED[name] in (check.reason or ""), check.reason
        assert run_flow(case.decorated, case.input_path) == case.changed_value
        return
    assert ("bundled" in case.plans) == (name in MAPPING), sorted(case.plans)
    planned = wisefuse(case.flow, plan=case.plans[kind], block=block)
    check = planned.check(str(case.input_path))
    assert check.planned, check.reason
    assert run_flow(planned, case.input_path) == case.changed_value
