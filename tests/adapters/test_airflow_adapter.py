"""The Airflow adapter: DAG files in, IR out.

Each case is an input/expected pair: a small DAG file in ``dags/`` and, for every task, the
stage it must become, written in a compact form (see :func:`describe`)::

    "python x3 static | x=const_item:[1, 2, 3]"     kind, instances, bindings
    "opaque :: uses the Airflow context"             kind, then a piece of the reason

and every edge as ``"src > dst kind pattern"``. Then the repository's example DAGs, errors,
parallelism from overrides and from a real ``dag.test()`` run, and every DAG Airflow ships.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from wisefuse_plugins.errors import MissingExtraError, WiseFuseError
from wisefuse_plugins.ir import Stage, Workflow
from wisefuse_plugins.ir.nodes import Binding

pytestmark = [
    pytest.mark.airflow,
    pytest.mark.skipif(importlib.util.find_spec("airflow") is None, reason="needs apache-airflow"),
]

DAGS = Path(__file__).resolve().parent / "dags"
REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- helpers


def short(b: Binding, values: bool = True) -> str:
    if b.kind == "const":
        return f"const:{json.dumps(b.value)}" if values else "const"
    if b.kind == "const_item":
        return f"const_item:{json.dumps(b.values)}"
    key = f"[{b.key}]" if getattr(b, "key", None) else ""
    return f"{b.kind}:{b.stage}{key}"


def head(s: Stage, values: bool = True) -> str:
    """A stage without its reason: kind, instance count when mapped, bindings."""
    text = s.kind.value
    if s.mapped:
        text += f" x{s.parallelism} {s.parallelism_source}"
    if s.bindings:
        text += " | " + " ".join(f"{p}={short(b, values)}" for p, b in s.bindings.items())
    return text


def describe(wf: Workflow) -> tuple[dict[str, Stage], set[str]]:
    stages = {s.name: s for s in wf.stages}
    edges = {f"{e.src} > {e.dst} {e.kind.value} {e.pattern.value}" for e in wf.edges}
    return stages, edges


def convert(file: str, dag_id: str | None = None, **kw) -> Workflow:
    from wisefuse_plugins.adapters.airflow import workflow_from_file

    return workflow_from_file(DAGS / file, dag_id, **kw)


@dataclass
class Case:
    file: str
    dag_id: str | None
    stages: dict[str, str]
    edges: set[str] = field(default_factory=set)


CONTEXT = "uses the Airflow context"

CASES = {
    "taskflow_chain": Case(
        "taskflow_chain.py",
        None,
        {
            "extract": "python",
            "transform": "python | data=output:extract factor=const:2",
            "load": "python | rows=output:transform",  # `table` keeps its default
        },
        {"extract > transform data one_to_one", "transform > load data one_to_one"},
    ),
    "python_operator": Case(
        "python_operator.py",
        None,
        {
            "add": "python | a=const:1 b=const:2 c=const:3",
            "report": 'python | total=output:add label=const:"sum"',
            "cleanup": "python",
        },
        {"add > report data one_to_one", "report > cleanup control one_to_one"},
    ),
    "literal_expand": Case(
        "mapping.py",
        "literal_expand",
        {
            "square": "python x3 static | x=const_item:[1, 2, 3]",
            "total": "python | values=collect:square",
        },
        {"square > total data gather"},
    ),
    "scatter_gather": Case(
        "mapping.py",
        "scatter_gather",
        {
            "make_list": "python | n=const:5",
            "square": "python x10 expected | x=item:make_list",
            "inc": "python x10 expected | x=item:square step=const:10",
            "total": "python | values=collect:inc",
        },
        {
            "make_list > square data scatter",
            "square > inc data one_to_one",
            "inc > total data gather",
        },
    ),
    "partial_broadcast": Case(
        "mapping.py",
        "partial_broadcast",
        {
            "load": "python",
            "train": "python x2 static | data=output:load lr=const_item:[0.1, 0.01] epochs=const:3",
        },
        {"load > train data broadcast"},
    ),
    "multiple_outputs": Case(
        "multiple_outputs.py",
        None,
        {"config": "python", "greet": "python | name=output:config[name] whole=output:config"},
        {"config > greet data one_to_one"},
    ),
    "cross_product": Case(
        "cross_product.py",
        None,
        {
            "combine": 'python x6 static | x=const_item:[1, 1, 1, 2, 2, 2] y=const_item:["a", "b", "c", "a", "b", "c"]',
            "numbers": "python",
            "combine__1": "opaque :: cross product over run-time values (x, y)",
        },
        {"numbers > combine__1 control one_to_one"},
    ),
    "expand_kwargs": Case(
        "expand_kwargs.py",
        None,
        {
            "add": "python x3 static | x=const_item:[1, 3, 5] y=const_item:[2, 4, 6]",
            "add__1": "opaque :: expand_kwargs dicts have different keys",
            "pairs": "python",
            "add__2": "opaque :: expand_kwargs over a run-time list of dicts",
        },
        {"pairs > add__2 control one_to_one"},
    ),
    "classic_mapped": Case(
        "classic_mapped.py",
        None,
        {
            "by_kwargs": "python x2 static | x=const_item:[1, 3] factor=const_item:[2, 4]",
            "by_args": "python x3 static | x=const_item:[1, 2, 3] factor=const:10",
        },
    ),
    "task_group": Case(
        "groups_and_rules.py",
        "task_group",
        {
            "start": "python",
            "prep.double": "python | x=output:start",
            "prep.double__1": "python | x=output:prep-double",
            "finish": "python",
        },
        {
            "start > prep-double data one_to_one",
            "prep-double > prep-double__1 data one_to_one",
            "prep-double__1 > finish control one_to_one",
        },
    ),
    "mapped_task_group": Case(
        "groups_and_rules.py",
        "mapped_task_group",
        {
            "twice.double": "opaque :: in the mapped task group 'twice'",
            "twice.double__1": "opaque :: in the mapped task group 'twice'",
            "tally": "opaque :: reads 'twice.double__1', whose instances the IR does not represent",
        },
        {
            "twice-double > twice-double__1 control one_to_one",
            "twice-double__1 > tally control one_to_one",
        },
    ),
    "trigger_rule": Case(
        "groups_and_rules.py",
        "trigger_rule",
        {"start": "python", "always": "opaque :: trigger rule all_done"},
        {"start > always control one_to_one"},
    ),
    "setup_teardown": Case(
        "groups_and_rules.py",
        "setup_teardown",
        {
            "create": "opaque :: setup/teardown",
            "work": "python",
            "drop": "opaque :: setup/teardown",
        },
        {
            "create > work control one_to_one",
            "work > drop control one_to_one",
            "create > drop control one_to_one",
        },
    ),
    "operators": Case(
        "operators.py",
        None,
        {
            "bash": "opaque :: BashOperator: runs a shell command",
            "empty": "opaque :: EmptyOperator",
            "wait": "opaque :: TimeDeltaSensor: a sensor",
            "branch": "opaque :: BranchPythonOperator: chooses which downstream tasks run",
            "gate": "opaque :: ShortCircuitOperator",
            "python_step": "python",
            "choose": "opaque :: @task.branch",
            "shell": "opaque :: @task.bash",
            # opaque, but still mapped: its instance count and edges stay right
            "mapped_bash": 'opaque x2 static | bash_command=const_item:["echo 1", "echo 2"] :: BashOperator',
            # a mapping it cannot write down: named after the operator, then why
            "odd_bash": "opaque :: BashOperator: runs a shell command; argument env[0]['DAY'] is a date",
        },
        {
            "bash > empty control one_to_one",
            "empty > wait control one_to_one",
            "wait > branch control one_to_one",
            "branch > gate control one_to_one",
            "gate > python_step control one_to_one",
            "python_step > choose control one_to_one",
            "choose > shell control one_to_one",
        },
    ),
    "unrepresentable": Case(
        "unrepresentable.py",
        None,
        {
            "with_ti": f"opaque :: {CONTEXT} (parameter 'ti')",
            "with_context": f"opaque :: {CONTEXT} (**context receives it)",
            "ds": f"opaque :: {CONTEXT} (parameter 'ds')",
            "jinja": "opaque :: is a Jinja template ('{{ ds }}')",
            "a_datetime": "opaque :: is a date",
            "a_tuple": "opaque :: is a tuple",
            "lambda": "opaque :: is a lambda or a nested function",
            "varargs": "opaque :: takes *values",
            "rebound": "opaque :: names another object at module level",
            "templates": "opaque :: templates_dict",
            "nested": "opaque :: is a lambda or a nested function",
            "numbers": "python",
            "numbers__1": "python",
            "use": "opaque :: ZipXComArg",
            "use__1": "opaque :: MapXComArg",
            "use__2": "opaque :: reads 'use', whose instances the IR does not represent",
            "use__3": "python x10 expected | x=item:numbers",
            "use__4": "python | x=collect:use__3",
            "use__5": "opaque :: nests an upstream output inside a literal",
        },
        {
            "numbers > use__3 data scatter",
            "use__3 > use__4 data gather",
            "numbers > use control one_to_one",
            "numbers__1 > use control one_to_one",
            "numbers > use__1 control one_to_one",
            "use > use__2 control one_to_one",
            "numbers > use__5 control one_to_one",
        },
    ),
}


def check(
    wf: Workflow, stages: dict[str, str], edges: set[str] | None, values: bool = True
) -> None:
    got, got_edges = describe(wf)
    assert set(got) == set(stages), "tasks and stages differ"
    for name, want in stages.items():
        want_head, _, reason = want.partition(" :: ")
        assert head(got[name], values) == want_head, name
        if reason:
            assert reason in (got[name].opaque_reason or ""), (name, got[name].opaque_reason)
    if edges is not None:
        assert got_edges == edges


# --------------------------------------------------------------------------- the cases


@pytest.mark.parametrize("name", list(CASES))
def test_case(name: str) -> None:
    case = CASES[name]
    check(convert(case.file, case.dag_id), case.stages, case.edges)


def test_cross_product_follows_airflow_map_index_order() -> None:
    """Instance i gets what Airflow gives map_index i (its own expansion code decides)."""
    from wisefuse_plugins.adapters.airflow import load_dag_file

    dag = load_dag_file(DAGS / "cross_product.py")
    task = dag.get_task("combine")
    expand = task.op_kwargs_expand_input
    lengths = {k: len(v) for k, v in expand.value.items()}
    stage = convert("cross_product.py").stage("combine")
    for i in range(stage.parallelism):
        for key, values in expand.value.items():
            assert stage.bindings[key].values[i] == expand._expand_mapped_field(
                key, values, i, lengths
            )


def test_callables_reimport_with_their_code_hash() -> None:
    """The runtime's loader finds each Python stage's function by file and name."""
    from wisefuse_plugins.runtime.loader import load_callable

    for file in ("taskflow_chain.py", "python_operator.py"):
        wf = convert(file)
        for s in wf.stages:
            fn = load_callable(s.callable, wf.source.root)  # checks the code hash too
            assert fn.__name__ == s.callable.qualname
            assert s.callable.path == file


def test_source_ids_meta_and_retries() -> None:
    wf = convert("groups_and_rules.py", "task_group")
    assert wf.name == "task_group"
    assert wf.source.framework == "airflow"
    assert wf.source.root == str(DAGS)
    assert (wf.source.path, wf.source.entry) == ("groups_and_rules.py", "task_group")
    assert [s.id for s in wf.stages] == ["start", "prep-double", "prep-double__1", "finish"]
    chain = convert("taskflow_chain.py")
    assert chain.stage("load").retries == 2
    assert chain.stage("load").meta == {
        "operator": "@task",
        "task_id": "load",
        "trigger_rule": "all_success",
        "pool": "default_pool",
        "multiple_outputs": False,
    }
    assert convert("python_operator.py").stage("add").meta["pool"] == "small"
    assert convert("python_operator.py").stage("add").meta["operator"] == "PythonOperator"
    assert convert("multiple_outputs.py").stage("config").meta["multiple_outputs"] is True


def test_functions_outside_the_root_are_opaque(tmp_path: Path) -> None:
    wf = convert("taskflow_chain.py", root=tmp_path)
    assert all(not s.is_python for s in wf.stages)
    assert "outside the workflow root" in wf.stage("extract").opaque_reason
    assert wf.source.path == str(DAGS / "taskflow_chain.py")


# --------------------------------------------------------------------------- parallelism


def test_parallelism_override_reaches_one_to_one_consumers() -> None:
    wf = convert("mapping.py", "scatter_gather", parallelism={"square": 7})
    assert [(s.parallelism, s.parallelism_source) for s in wf.stages] == [
        (1, "static"),
        (7, "override"),
        (7, "override"),  # inc pairs with square, instance by instance
        (1, "static"),
    ]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"nope": 3}, "has no such task"), ({"square": 0}, "whole number >= 1")],
)
def test_bad_parallelism_override(overrides: dict, message: str) -> None:
    with pytest.raises(WiseFuseError, match=message):
        convert("mapping.py", "scatter_gather", parallelism=overrides)


def test_parallelism_observed_in_a_dag_test_run(airflow_home: Path) -> None:
    """``dag.test()`` of the repo's video DAG (4 chunks): the run and its DB both say 4."""
    from wisefuse_plugins.adapters.airflow import from_dag, load_dag_file

    dag = load_dag_file(REPO / "airflow" / "video_analytics.py")
    run = dag.test()
    assert run.state == "success"
    url = f"sqlite:///{airflow_home / 'airflow.db'}"
    for history in (run, url):
        wf = from_dag(dag, history=history)
        counts = {s.name: (s.parallelism, s.parallelism_source) for s in wf.stages}
        assert counts == {
            "split_video": (1, "static"),
            "extract_features": (4, "observed"),
            "classify": (4, "observed"),
            "aggregate": (1, "static"),
        }
        assert wf.meta["observed_run_id"] == run.run_id
    # an override still wins over what was observed
    wf = from_dag(dag, history=url, parallelism={"extract_features": 8})
    assert wf.stage("classify").parallelism == 8


@pytest.mark.parametrize(
    ("history", "message"),
    [
        ("sqlite:////nonexistent/airflow.db", "the file does not exist"),
        ("nope://host/db", "cannot read Airflow run history"),
        (42, "history must be"),
    ],
)
def test_bad_history(history: object, message: str) -> None:
    with pytest.raises(WiseFuseError, match=message):
        convert("mapping.py", "scatter_gather", history=history)


# --------------------------------------------------------------------------- errors


def test_a_file_that_does_not_import() -> None:
    from wisefuse_plugins.adapters.airflow import load_dag_file

    with pytest.raises(WiseFuseError) as info:
        load_dag_file(DAGS / "broken.py")
    assert "broken.py" in info.value.message
    assert "RuntimeError: the config server is down" in info.value.message
    assert "python" in info.value.hint and "broken.py" in info.value.hint


@pytest.mark.parametrize(
    ("file", "dag_id", "message"),
    [
        ("two_dags.py", None, "defines 2 DAGs (first, second)"),
        ("two_dags.py", "third", "has no DAG 'third'; it defines: first, second"),
        ("missing.py", None, "does not exist"),
    ],
)
def test_choosing_a_dag(file: str, dag_id: str | None, message: str) -> None:
    from wisefuse_plugins.adapters.airflow import load_dag_file

    with pytest.raises(WiseFuseError, match=re.escape(message)):
        load_dag_file(DAGS / file, dag_id)


def test_dag_id_picks_one_of_several() -> None:
    assert convert("two_dags.py", "second").name == "second"


def test_an_unexpected_failure_makes_one_task_opaque(monkeypatch: pytest.MonkeyPatch) -> None:
    from wisefuse_plugins.adapters.airflow import task as one_task

    real = one_task.python_call

    def flaky(task, mapping, ctx):
        if task.task_id == "transform":
            raise KeyError("surprise")
        return real(task, mapping, ctx)

    monkeypatch.setattr(one_task, "python_call", flaky)
    wf = convert("taskflow_chain.py")
    assert (
        "could not analyse the task (KeyError: 'surprise')" in wf.stage("transform").opaque_reason
    )
    assert wf.stage("load").is_python  # an opaque stage's output is still data it reads
    assert wf.edge("transform", "load").kind == "data"


def test_a_stage_the_ir_rejects_is_demoted_not_raised() -> None:
    """The safety net behind "never crash": a stage that fails validation becomes opaque."""
    from wisefuse_plugins.adapters.airflow.dag import _build
    from wisefuse_plugins.ir import Collect, Source, callable_ref

    ref = callable_ref(short, REPO)
    stages = [
        Stage(id="a", callable=ref),
        Stage(id="b", callable=ref, bindings={"x": Collect(stage="a")}),  # a is not mapped
        Stage(id="c", callable=ref),
    ]
    wf = _build("w", stages, [("a", "b"), ("b", "c")], Source(framework="airflow"), {})
    assert [s.kind.value for s in wf.stages] == ["python", "opaque", "python"]
    assert "could not be represented in the IR" in wf.stage("b").opaque_reason
    assert {(e.src, e.dst, e.kind.value) for e in wf.edges} == {
        ("a", "b", "control"),
        ("b", "c", "control"),
    }


# --------------------------------------------------------------------------- the repo's DAGs

EXAMPLES = {
    "video_analytics": (
        {
            "split_video": "python | n_chunks=const frames_per_chunk=const height=const width=const seed=const",
            "extract_features": "python x10 expected | chunk=item:split_video",
            "classify": "python x10 expected | features=item:extract_features",
            "aggregate": "python | results=collect:classify",
        },
        {
            "split_video > extract_features data scatter",
            "extract_features > classify data one_to_one",
            "classify > aggregate data gather",
        },
    ),
    "ml_pipeline": (
        {
            "load_data": "python | n_samples=const n_features=const seed=const",
            "pca": "python | data=output:load_data n_components=const",
            "make_grid": "python | n_alphas=const n_gammas=const n_folds=const",
            "train_trial": "python x10 expected | reduced=output:pca hyperparams=item:make_grid",
            "pick_best": "python | results=collect:train_trial",
        },
        {
            "load_data > pca data one_to_one",
            "pca > train_trial data broadcast",
            "make_grid > train_trial data scatter",
            "train_trial > pick_best data gather",
        },
    ),
    "approx_svd": (
        {
            "make_matrix": "python | n_rows=const n_cols=const rank=const seed=const",
            "split_blocks": "python | matrix=output:make_matrix n_blocks=const",
            "block_product": "python x10 expected | block=item:split_blocks sketch_size=const sketch_seed=const",
            "combine": "python | products=collect:block_product k=const",
        },
        {
            "make_matrix > split_blocks data one_to_one",
            "split_blocks > block_product data scatter",
            "block_product > combine data gather",
        },
    ),
    "mixed_operators": (
        {
            "fetch_dataset": "opaque :: BashOperator: runs a shell command",
            "load_data": "python | n_samples=const n_features=const seed=const",
            "pca": "python | data=output:load_data n_components=const",
            "summarize": "python | reduced=output:pca",
            "publish": "opaque :: BashOperator: runs a shell command",
        },
        {
            "fetch_dataset > load_data control one_to_one",
            "load_data > pca data one_to_one",
            "pca > summarize data one_to_one",
            "summarize > publish control one_to_one",
        },
    ),
}


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_repository_example_dags(name: str) -> None:
    from wisefuse_plugins.adapters.airflow import workflow_from_file

    wf = workflow_from_file(REPO / "airflow" / f"{name}.py")
    stages, edges = EXAMPLES[name]
    check(wf, stages, edges, values=False)  # literal sizes live in examples.apps: not copied
    assert wf.source.root == str(REPO / "airflow") and wf.source.path == f"{name}.py"


def test_example_literals_are_the_apps_sizes() -> None:
    from examples.apps import video
    from wisefuse_plugins.adapters.airflow import workflow_from_file

    wf = workflow_from_file(REPO / "airflow" / "video_analytics.py")
    split = wf.stage("split_video").bindings
    assert {p: b.value for p, b in split.items()} == video.SIZES["small"]


# --------------------------------------------------------------------------- robustness


def test_every_airflow_example_dag_converts(record_property) -> None:
    """Airflow's own example DAGs: no exception, a valid workflow, one stage per task."""
    import airflow
    from airflow.dag_processing.dagbag import DagBag

    from wisefuse_plugins.adapters.airflow import from_dag
    from wisefuse_plugins.adapters.airflow.load import _parsing

    with _parsing():
        bag = DagBag(
            dag_folder=str(Path(airflow.__file__).parent / "example_dags"), safe_mode=False
        )
    assert not bag.import_errors
    kinds: Counter[str] = Counter()
    for dag in bag.dags.values():
        wf = from_dag(dag)
        assert len(wf.stages) == len(dag.tasks), dag.dag_id
        assert {s.name for s in wf.stages} == set(dag.task_ids)
        assert len(wf.edges) == sum(len(t.upstream_task_ids) for t in dag.tasks), dag.dag_id
        kinds.update(s.kind.value for s in wf.stages)
    figures = {"dags": len(bag.dags), "tasks": sum(kinds.values()), **kinds}
    record_property("airflow_example_dags", figures)
    print(f"\nAirflow example DAGs: {figures}")
    assert figures["dags"] >= 80 and figures["python"] > 0 and figures["opaque"] > 0


def test_importing_the_adapter_does_not_import_airflow() -> None:
    code = (
        "import sys, wisefuse_plugins.adapters.airflow, wisefuse_plugins.targets\n"
        "assert 'airflow' not in sys.modules, 'airflow was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_missing_airflow_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import PackageNotFoundError

    from wisefuse_plugins.adapters import airflow as adapter
    from wisefuse_plugins.adapters.airflow import access

    def missing(name: str) -> str:
        raise PackageNotFoundError(name)

    monkeypatch.setattr(access, "version", missing)
    with pytest.raises(MissingExtraError) as info:
        adapter.load_dag_file(DAGS / "taskflow_chain.py")
    assert info.value.extra == "airflow" and info.value.package == "apache-airflow"
