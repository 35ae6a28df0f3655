"""The Prefect adapter: small flows in, expected stages / bindings / edges out.

Every flow is traced once per module (``traced``) against the session's temporary Prefect
server (``prefect_env`` in tests/conftest.py); ``from_history`` then reads those same runs
back from the API.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from wisefuse_plugins.errors import MissingExtraError
from wisefuse_plugins.ir import (
    Collect,
    Const,
    ConstItem,
    Item,
    Output,
    Workflow,
    from_json,
    to_json,
)

pytestmark = pytest.mark.prefect

FLOWS = Path(__file__).resolve().parent / "flows"
REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "prefect"


def load(path: Path, name: str | None = None) -> Any:
    from wisefuse_plugins.adapters.prefect import load_flow_file

    return load_flow_file(path, name)


@pytest.fixture(scope="module")
def traced(prefect_env: dict[str, str]) -> Callable[..., Workflow]:
    """``traced(file, flow_name=None)``: the flow traced once, cached for the module."""
    from wisefuse_plugins.adapters.prefect import trace_flow

    cache: dict[tuple[Path, str | None], Workflow] = {}

    def get(path: Path, name: str | None = None) -> Workflow:
        if (path, name) not in cache:
            cache[path, name] = trace_flow(load(path, name))
        return cache[path, name]

    return get


def shape(wf: Workflow) -> dict[str, Any]:
    """What the tests compare: stages (kind, parallelism) and edges (kind, pattern)."""
    return {
        "stages": {s.id: (s.kind.value, s.parallelism) for s in wf.stages},
        "edges": {(e.src, e.dst, e.kind.value, e.pattern.value) for e in wf.edges},
    }


def bindings(wf: Workflow) -> dict[str, dict[str, Any]]:
    return {s.id: dict(s.bindings) for s in wf.stages}


# --------------------------------------------------------------------------- small flows


def test_chain_of_plain_calls(traced):
    wf = traced(FLOWS / "chain.py")
    assert shape(wf) == {
        "stages": {
            "load": ("python", 1),
            "settings": ("python", 1),
            "clean": ("python", 1),
            "clean-2": ("python", 1),
            "summarize": ("python", 1),
        },
        "edges": {
            ("load", "clean", "data", "one_to_one"),
            ("settings", "clean-2", "data", "one_to_one"),
            ("clean", "summarize", "data", "one_to_one"),
        },
    }
    assert bindings(wf) == {
        "load": {"n": Const(value=4)},  # a flow parameter: the traced value
        "settings": {},
        "clean": {"rows": Output(stage="load"), "drop": Const(value=1)},
        "clean-2": {"rows": Output(stage="settings", key="rows")},  # cfg["rows"]
        "summarize": {"values": Output(stage="clean"), "label": Const(value="total")},
    }
    clean, again = wf.stage("clean"), wf.stage("clean-2")
    assert (clean.name, again.name) == ("clean", "clean")
    assert (clean.meta["call"], again.meta["call"]) == (0, 1)
    assert clean.retries == 2 and wf.stage("load").retries == 0
    assert all(len(s.meta["observed_ms"]) == 1 for s in wf.stages)
    assert wf.name == "chain" and wf.meta["parameters"] == {"n": 4}
    assert (wf.source.framework, wf.source.path, wf.source.entry) == (
        "prefect",
        "chain.py",
        "chain",
    )
    assert Path(wf.source.root) == FLOWS
    assert wf.stage("load").callable.path == "chain.py"
    assert wf.stage("load").callable.qualname == "load"
    assert from_json(to_json(wf)) == wf


def test_submit_futures_and_wait_for(traced):
    wf = traced(FLOWS / "submit.py")
    assert shape(wf)["edges"] == {
        ("fetch", "parse", "data", "one_to_one"),
        ("parse", "index", "data", "one_to_one"),
        ("notify", "index", "control", "one_to_one"),
    }
    assert bindings(wf) == {
        "fetch": {"url": Const(value="https://example.org")},
        "parse": {"page": Output(stage="fetch")},
        "notify": {"message": Const(value="starting")},
        "index": {"words": Output(stage="parse")},
    }
    assert {s.meta["how"] for s in wf.stages} == {"submit"}


def test_every_kind_of_map(traced):
    wf = traced(FLOWS / "mapping.py")
    assert shape(wf) == {
        "stages": {
            "make": ("python", 1),
            "config": ("python", 1),
            "square": ("python", 3),
            "shift": ("python", 3),
            "square-2": ("python", 2),
            "total": ("python", 1),
            "total-2": ("python", 1),
        },
        "edges": {
            ("make", "square", "data", "scatter"),
            ("config", "square", "data", "broadcast"),
            ("square", "shift", "data", "one_to_one"),
            ("shift", "total", "data", "gather"),
            ("square-2", "total-2", "data", "gather"),
        },
    }
    b = bindings(wf)
    assert b["square"] == {"x": Item(stage="make"), "cfg": Output(stage="config")}
    assert b["shift"] == {"y": Item(stage="square"), "by": ConstItem(values=[1, 2, 3])}
    assert b["square-2"] == {"x": ConstItem(values=[5, 6]), "cfg": Const(value={"offset": 0})}
    assert b["total"] == {"values": Collect(stage="shift")}
    assert b["total-2"] == {"values": Collect(stage="square-2")}
    square = wf.stage("square")
    assert square.parallelism_source == "observed" and len(square.meta["observed_ms"]) == 3


def test_traced_mapping_runs_on_the_runtime_with_the_flows_results(traced, tmp_path):
    from wisefuse_plugins.plan.schema import single_stage_plan
    from wisefuse_plugins.runtime import store as st
    from wisefuse_plugins.runtime.backends.inprocess import InProcessBackend
    from wisefuse_plugins.runtime.executor import execute

    wf = traced(FLOWS / "mapping.py")
    store = st.LocalStore(tmp_path / "store")
    result = execute(
        wf,
        single_stage_plan(wf),
        InProcessBackend(store, FLOWS),
        store,
        workdir=tmp_path / "units",
    )
    # make(3) = [1, 2, 3]; square: x*x + 1000; shift by 1, 2, 3; the literal map: 25, 36
    assert result.outputs == {"total": 1002 + 1006 + 1012, "total-2": 25 + 36}


def test_what_cannot_be_expressed_is_opaque_with_a_reason(traced):
    wf = traced(FLOWS / "opaque.py")
    kinds = {s.id: s.kind.value for s in wf.stages}
    assert kinds == {
        "source": "python",
        "bump": "python",
        "lambda": "opaque",
        "inner": "opaque",
        "area": "opaque",
        "describe": "opaque",
        "describe-2": "opaque",
    }
    reason = {s.id: s.opaque_reason or "" for s in wf.stages}
    assert "lambda" in reason["lambda"] and "nested" in reason["inner"]
    assert "tuple" in reason["area"]
    assert "nests the output of an upstream task" in reason["describe"]
    assert "one instance (#0) of mapped 'bump'" in reason["describe-2"]
    assert wf.stage("lambda").bindings == {"values": Output(stage="source")}
    # dependencies the IR cannot bind still order the stages
    assert shape(wf)["edges"] == {
        ("source", "bump", "data", "scatter"),
        ("source", "lambda", "data", "one_to_one"),
        ("source", "describe", "control", "one_to_one"),
        ("bump", "describe-2", "control", "gather"),
    }


def test_identity_collisions_make_no_edges(traced):
    """Prefect links "gpu" inside literals to the task that returned "gpu"; the trace does not."""
    wf = traced(FLOWS / "spurious.py")
    assert shape(wf)["edges"] == {
        ("make", "run", "data", "scatter"),
        ("count", "report-2", "data", "one_to_one"),
        ("device", "report-2", "data", "one_to_one"),
    }
    b = bindings(wf)
    assert b["run"] == {
        "x": Item(stage="make"),
        "options": Const(value={"device": "gpu", "threads": 3}),
    }
    assert b["report"] == {"n": Const(value=3), "label": Const(value="gpu")}  # literals
    assert b["report-2"] == {"n": Output(stage="count"), "label": Output(stage="device")}
    # the pitfall is real: Prefect did record device -> run, and we ignored it
    assert "device" in wf.stage("run").meta["ignored_api_inputs"]["options"]


def test_a_subflow_is_one_opaque_stage(traced):
    wf = traced(FLOWS / "subflow.py", "with-subflow")
    assert shape(wf) == {
        "stages": {
            "prepare": ("python", 1),
            "inner-scale": ("opaque", 1),
            "summary": ("python", 1),
        },
        "edges": {
            ("prepare", "inner-scale", "data", "one_to_one"),
            ("inner-scale", "summary", "data", "one_to_one"),
        },
    }
    sub = wf.stage("inner-scale")
    assert "subflow" in sub.opaque_reason and sub.callable.qualname == "inner_scale"
    assert sub.bindings == {"values": Output(stage="prepare")}
    assert len(sub.meta["observed_ms"]) == 1


def test_a_retried_flow_keeps_its_last_attempt(traced):
    wf = traced(FLOWS / "flaky.py")
    assert shape(wf) == {
        "stages": {"first": ("python", 1), "second": ("python", 1)},
        "edges": {("first", "second", "data", "one_to_one")},
    }


# --------------------------------------------------------------------------- examples

EXPECTED_EXAMPLES = {
    "video_analytics.py": {
        "stages": {
            "split_video": ("python", 1),
            "extract_features": ("python", 4),
            "classify": ("python", 4),
            "aggregate": ("python", 1),
        },
        "edges": {
            ("split_video", "extract_features", "data", "scatter"),
            ("extract_features", "classify", "data", "one_to_one"),
            ("classify", "aggregate", "data", "gather"),
        },
    },
    "ml_pipeline.py": {
        "stages": {
            "load_data": ("python", 1),
            "pca": ("python", 1),
            "make_grid": ("python", 1),
            "train_trial": ("python", 4),
            "pick_best": ("python", 1),
        },
        "edges": {
            ("load_data", "pca", "data", "one_to_one"),
            ("pca", "train_trial", "data", "broadcast"),
            ("make_grid", "train_trial", "data", "scatter"),
            ("train_trial", "pick_best", "data", "gather"),
        },
    },
    "approx_svd.py": {
        "stages": {
            "make_matrix": ("python", 1),
            "split_blocks": ("python", 1),
            "block_product": ("python", 4),
            "combine": ("python", 1),
        },
        "edges": {
            ("make_matrix", "split_blocks", "data", "one_to_one"),
            ("split_blocks", "block_product", "data", "scatter"),
            ("block_product", "combine", "data", "gather"),
        },
    },
}


@pytest.mark.parametrize("file", list(EXPECTED_EXAMPLES))
def test_example_flows(traced, file):
    wf = traced(EXAMPLES / file)
    assert shape(wf) == EXPECTED_EXAMPLES[file]
    assert wf.source.root == str(EXAMPLES) and wf.source.path == file
    assert all(s.callable.path == file for s in wf.stages)


def test_example_svd_bindings(traced):
    b = bindings(traced(EXAMPLES / "approx_svd.py"))
    assert b["block_product"] == {
        "block": Item(stage="split_blocks"),
        "sketch_size": Const(value=11),  # unmapped(k + oversample): computed in the flow
        "sketch_seed": Const(value=6),
    }
    assert b["combine"] == {"products": Collect(stage="block_product"), "k": Const(value=5)}


# --------------------------------------------------------------------------- history

HISTORY_CASES = [
    (FLOWS / "submit.py", None),
    (FLOWS / "subflow.py", "with-subflow"),
    *[(EXAMPLES / f, None) for f in EXPECTED_EXAMPLES],
]


@pytest.mark.parametrize(("path", "name"), HISTORY_CASES, ids=lambda v: getattr(v, "name", v))
def test_history_rebuilds_the_traced_graph(traced, path, name):
    from wisefuse_plugins.adapters.prefect import from_history

    wf = traced(path, name)
    past = from_history(wf.name, root=path.parent)
    assert shape(past) == shape(wf)
    assert past.meta["flow_run_id"] == wf.meta["flow_run_id"]  # the traced run, read back
    assert past.meta["built_by"] == "history" and past.meta["parameters"] == wf.meta["parameters"]
    assert (past.source.path, past.source.entry) == (wf.source.path, wf.source.entry)
    for s in past.stages:
        assert s.callable == wf.stage(s.id).callable
        assert len(s.meta["observed_ms"]) == len(wf.stage(s.id).meta["observed_ms"])


def test_history_is_less_precise_and_says_so(traced):
    from wisefuse_plugins.adapters.prefect import from_history

    traced(EXAMPLES / "video_analytics.py")
    past = from_history("video-analytics", root=EXAMPLES)
    split = past.stage("split_video")
    assert split.bindings == {}  # literal arguments are not recorded
    assert split.meta["params_unknown"] == [
        "n_chunks",
        "frames_per_chunk",
        "height",
        "width",
        "seed",
    ]
    assert past.stage("extract_features").meta["guessed"] == ["chunk"]  # scatter, from -> list
    assert past.meta["executable"] is False
    blind = from_history("video-analytics")  # no code to match task keys against
    assert {s.kind.value for s in blind.stages} == {"opaque"}
    assert shape(blind)["edges"] == shape(past)["edges"]


def test_history_drops_sibling_and_late_inputs(traced):
    """Mapped ``run`` instances list each other (interned "gpu"): still one stage, no self-edge."""
    from wisefuse_plugins.adapters.prefect import from_history

    traced(FLOWS / "spurious.py")
    past = from_history("spurious", root=FLOWS)
    assert past.stage("run").parallelism == 4
    assert past.stage("run").bindings["x"] == Item(stage="make")
    assert all(e.src != e.dst for e in past.edges)
    # separate calls of one task are merged in history (documented): report x2
    assert past.stage("report").parallelism == 2


def test_history_of_an_unknown_flow(prefect_env):
    from wisefuse_plugins.adapters.prefect import PrefectAdapterError, from_history

    with pytest.raises(PrefectAdapterError, match="no completed run of flow 'never-ran'"):
        from_history("never-ran")


# --------------------------------------------------------------------------- errors


def test_load_flow_file_errors(prefect_env):
    from wisefuse_plugins.adapters.prefect import PrefectAdapterError

    with pytest.raises(PrefectAdapterError, match="does not exist"):
        load(FLOWS / "missing.py")
    with pytest.raises(PrefectAdapterError, match=r"importing .*broken\.py failed: ModuleNotFound"):
        load(FLOWS / "broken.py")
    with pytest.raises(PrefectAdapterError, match="defines no Prefect flow"):
        load(FLOWS / "no_flow.py")
    with pytest.raises(PrefectAdapterError, match=r"several flows \(first, second\)") as err:
        load(FLOWS / "two_flows.py")
    assert err.value.hint == (
        f"pass flow_name=<one of them>, or on the command line {FLOWS / 'two_flows.py'}::FLOW_NAME"
    )
    assert load(FLOWS / "two_flows.py", "second").name == "second"
    assert load(FLOWS / "two_flows.py", "first").fn.__name__ == "first"
    with pytest.raises(PrefectAdapterError, match="no flow named 'third'"):
        load(FLOWS / "two_flows.py", "third")


def test_trace_refuses_what_it_cannot_trace(prefect_env):
    from wisefuse_plugins.adapters.prefect import PrefectAdapterError, trace_flow

    with pytest.raises(PrefectAdapterError, match="is not a Prefect flow"):
        trace_flow(lambda: None)
    with pytest.raises(PrefectAdapterError, match="ended FAILED"):
        trace_flow(load(FLOWS / "failing.py"))


def test_instrumentation_is_removed_after_a_trace(traced):
    from prefect.flows import Flow
    from prefect.tasks import Task

    before = (Task.__dict__["__call__"], Task.__dict__["map"], Flow.__dict__["__call__"])
    traced(FLOWS / "chain.py")
    after = (Task.__dict__["__call__"], Task.__dict__["map"], Flow.__dict__["__call__"])
    assert after == before
    assert not any(hasattr(m, "__wrapped__") for m in after)  # Prefect's own methods


def test_missing_prefect_names_the_extra(monkeypatch):
    import importlib.util

    from wisefuse_plugins.adapters import prefect as adapter

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "prefect" else real(name, *a)
    )
    with pytest.raises(MissingExtraError) as err:
        adapter.trace_flow(object())
    assert err.value.extra == "prefect" and "wisefuse-plugins[prefect]" in err.value.hint
