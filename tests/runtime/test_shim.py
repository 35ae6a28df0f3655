"""Framework-free units: DAG and flow files imported where Airflow and Prefect are absent.

The environment that matters is a unit's on AWS: its code and a layer, no Airflow, no
Prefect. ``absent`` builds one here: ``python -I -S`` (no site-packages) with a layer of
symlinks to exactly the packages the handler and the example apps import (found by
importing them in this venv), and the repository on ``sys.path`` (whose ``airflow/`` and
``prefect/`` folders of DAG and flow files are namespace packages there, not frameworks).
Every DAG and flow file of the repository, of ``tests/`` and Airflow's own examples must
import there and give the loader the same functions (qualname and code hash) as with the
real frameworks; the example DAGs and flows run unit by unit through the Lambda handler in
that environment and give the plain results; ``always`` mode does the same with the
frameworks installed but hidden.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import sysconfig
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.plans import chains_plan
from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.ir import Source, Workflow, callable_ref
from wisefuse_plugins.plan.schema import Unit, single_stage_plan
from wisefuse_plugins.runtime import loader, shim
from wisefuse_plugins.runtime import store as st
from wisefuse_plugins.runtime.compare import differences
from wisefuse_plugins.runtime.executor import Invoked, RunFailed, execute
from wisefuse_plugins.runtime.handler import ENV_ROOT, ENV_SPEC, ENV_STORE
from wisefuse_plugins.runtime.loader import CodeLoadError

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).resolve().parent / "shim_worker.py"
SITE = Path(sysconfig.get_paths()["purelib"])
EXAMPLE_DAGS = SITE / "airflow" / "example_dags"
APPS = {"video_analytics.py": "video", "ml_pipeline.py": "ml_pipeline", "approx_svd.py": "svd"}

# What a unit imports besides the standard library (the probe adds what these import).
UNIT_IMPORTS = (
    "wisefuse_plugins.runtime.handler",
    "wisefuse_plugins.runtime.shim",
    "examples.apps.ml_pipeline",
    "examples.apps.video",
    "examples.apps.svd",
    # What Airflow's example DAGs import themselves (a separate package, not stood in for):
    "pendulum",
    "httpx",
    "requests",
)
_PROBE = f"""
import json, sys
for name in {UNIT_IMPORTS!r}:
    __import__(name)
site = {str(SITE)!r}
used = set()
for mod in list(sys.modules.values()):
    path = getattr(mod, "__file__", None) or ""
    if path.startswith(site + "/"):
        used.add(path[len(site) + 1 :].split("/")[0])
print(json.dumps(sorted(used)))
"""


def repo_files() -> list[tuple[Path, str]]:
    """(code root, file) of every DAG and flow file in the repository and under tests/."""
    files = [(REPO / d, p.name) for d in ("airflow", "prefect") for p in (REPO / d).glob("*.py")]
    for pattern in ("tests/**/dags/*.py", "tests/**/flows/*.py"):
        files += [(p.parent, p.name) for p in REPO.glob(pattern)]
    return sorted(files)


def example_dag_files() -> list[tuple[Path, str]]:
    return sorted((EXAMPLE_DAGS, p.name) for p in EXAMPLE_DAGS.glob("*.py") if p.name[0] != "_")


class Interpreter:
    """One ``shim_worker.py`` process: an environment as a Lambda unit has it."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self._lock = threading.Lock()

    def ask(self, **req: Any) -> Any:
        with self._lock:
            assert self.proc.stdin and self.proc.stdout
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        assert line, f"the worker died (exit {self.proc.poll()})"
        resp = json.loads(line)
        assert resp["ok"], resp["error"]
        return resp["result"]

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != shim.ENV and not k.startswith("PYTHON")}
    return {**env, **extra}


@pytest.fixture(scope="module")
def layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A unit's layer: symlinks to the site-packages entries the unit's imports use."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, cwd=REPO
    )
    used = json.loads(out.stdout.strip().splitlines()[-1])
    assert not [u for u in used if u.split(".")[0] in ("airflow", "prefect")], used
    path = tmp_path_factory.mktemp("layer")
    for entry in used:
        (path / entry).symlink_to(SITE / entry)
        libs = SITE / f"{entry}.libs"  # auditwheel's vendored shared libraries
        if libs.is_dir() and not (path / libs.name).exists():
            (path / libs.name).symlink_to(libs)
    return path


def absent(layer: Path, **env: str) -> Interpreter:
    """An interpreter where Airflow and Prefect are not installed (and, as in every Lambda
    execution environment, ``AWS_LAMBDA_FUNCTION_NAME`` is set)."""
    argv = [sys.executable, "-I", "-S", str(WORKER), str(layer), str(REPO)]
    return Interpreter(argv, _env(AWS_LAMBDA_FUNCTION_NAME="wisefuse-test-unit", **env))


def installed(**env: str) -> Interpreter:
    """An interpreter of this venv (Airflow and Prefect installed)."""
    return Interpreter([sys.executable, str(WORKER), "", ""], _env(**env))


@pytest.fixture(scope="module")
def lambda_env(layer: Path) -> Any:
    worker = absent(layer)
    yield worker
    worker.close()


def test_the_absent_environment_has_no_framework(lambda_env: Interpreter) -> None:
    found = lambda_env.ask(op="probe")
    assert found["airflow.sdk"].startswith("ModuleNotFoundError"), found
    assert found["prefect.flows"].startswith("ModuleNotFoundError"), found
    # the repository's airflow/ and prefect/ folders: namespace packages, not frameworks
    assert found["airflow"] is None and found["prefect"] is None, found


# --------------------------------------------------------------------------- imports


def _by_file(worker: Interpreter, files: list[tuple[Path, str]]) -> dict[str, Any]:
    """The worker's answer per file, asked one folder at a time (file names repeat)."""
    out: dict[str, Any] = {}
    for folder in sorted({root for root, _ in files}):
        batch = [(root, rel) for root, rel in files if root == folder]
        got = worker.ask(op="functions", files=[[str(root), rel] for root, rel in batch])
        out.update({str((root / rel).relative_to(root.parent)): got[rel] for root, rel in batch})
    return out


@pytest.fixture(scope="module")
def real_functions() -> dict[str, Any]:
    """What the loader finds in every file with the real Airflow and Prefect."""
    worker = installed(**{shim.ENV: "never"})
    try:
        return _by_file(worker, repo_files() + example_dag_files())
    finally:
        worker.close()


@pytest.mark.slow
@pytest.mark.parametrize("group", ["repository", "airflow examples"])
def test_every_dag_and_flow_file_imports_without_the_frameworks(
    lambda_env: Interpreter, real_functions: dict[str, Any], group: str
) -> None:
    files = repo_files() if group == "repository" else example_dag_files()
    assert len(files) >= (30 if group == "repository" else 45)
    shimmed = _by_file(lambda_env, files)
    mismatches = {}
    for name, got in shimmed.items():
        real = real_functions[name]
        if "error" in real:  # a broken file fails in both, with the same error
            if got.get("error") != real["error"]:
                mismatches[name] = (real, got)
            continue
        if "error" in got:
            mismatches[name] = (real, got)
            continue
        # every function the loader can unwrap with the real framework, the same under the
        # shim (qualname and code hash); the shim may also unwrap @dag factories
        missing = {k: v for k, v in real["functions"].items() if got["functions"].get(k) != v}
        if missing:
            mismatches[name] = (missing, got["functions"])
    assert not mismatches, json.dumps(mismatches, indent=1)[:4000]
    decorated = sum(len(r["functions"]) for r in shimmed.values() if "functions" in r)
    assert decorated >= 60


INTEGRATED = {
    # a flow file decorated for the Prefect integration, a DAG file rewritten for Airflow's
    "wisefuse_flow.py": """
        from prefect import flow, task

        from wisefuse_plugins.prefect import wisefuse


        @task
        def double(x: int) -> int:
            return 2 * x


        @wisefuse(slo="1.5x")
        @flow
        def numbers(n: int = 4) -> int:
            return double(n)
        """,
    "rewritten_dag.py": """
        from pathlib import Path

        from airflow.sdk import dag, task

        from wisefuse_plugins.airflow import rewrite


        @task
        def double(x: int) -> int:
            return 2 * x


        @dag(schedule=None)
        def numbers():
            double(4)


        dag = rewrite(numbers(), Path(__file__).with_name("numbers.plan.json"))
        """,
}


def test_files_using_the_wisefuse_integrations_import_in_a_unit(
    lambda_env: Interpreter, tmp_path: Path
) -> None:
    """``@wisefuse`` and ``rewrite(...)`` import with the stand-ins and leave the tasks be."""
    for name, source in INTEGRATED.items():
        (tmp_path / name).write_text(textwrap.dedent(source).lstrip())
    got = lambda_env.ask(op="functions", files=[[str(tmp_path), name] for name in INTEGRATED])
    assert "functions" in got["wisefuse_flow.py"], got["wisefuse_flow.py"]
    assert set(got["wisefuse_flow.py"]["functions"]) == {"double", "numbers"}, got
    assert set(got["rewritten_dag.py"]["functions"]) >= {"double"}, got
    assert lambda_env.ask(op="status")["real"] == []


# --------------------------------------------------------------------------- units


class WorkerUnits:
    """The executor's invoker: every unit through the Lambda handler, in ``worker``."""

    def __init__(self, worker: Interpreter, store: st.Store, root: Path) -> None:
        self.worker, self.store, self.root = worker, store, root
        self.specs: dict[str, str] = {}

    def deploy(self, unit: Unit, spec_path: Path) -> None:
        self.specs[unit.id] = str(spec_path)

    def invoke(self, unit_id: str, event: dict[str, Any]) -> Invoked:
        env = {ENV_SPEC: self.specs[unit_id], ENV_ROOT: str(self.root), ENV_STORE: self.store.url}
        return Invoked(payload=self.worker.ask(op="invoke", env=env, event=event))


_observed: dict[str, tuple[Workflow, dict[str, Any]]] = {}


def dag_workflow(dag_file: str) -> tuple[Workflow, dict[str, Any]]:
    """The example DAG's IR (the Airflow adapter, real Airflow here) and its plain outputs."""
    if dag_file not in _observed:
        from wisefuse_plugins.adapters.airflow import workflow_from_file
        from wisefuse_plugins.runtime.observe import observe

        _observed[dag_file] = observe(workflow_from_file(REPO / "airflow" / dag_file))
    return _observed[dag_file]


def flow_workflow(flow_file: str) -> Workflow:
    """The example flow's IR: the same app's DAG graph with every stage pointed at the flow
    file's task of the same name (the examples are written alike; the results below check
    it). Tracing would need a Prefect server; what is under test is the unit's import."""
    from tests.conftest import load_module_from_path

    wf, _ = dag_workflow(flow_file)
    module = load_module_from_path(REPO / "prefect" / flow_file, f"_shim_test_{flow_file[:-3]}")
    root = REPO / "prefect"
    stages = [
        s.model_copy(update={"callable": callable_ref(getattr(module, s.id).fn, root)})
        for s in wf.stages
    ]
    source = Source(framework="prefect", root=str(root), path=flow_file, entry=wf.name)
    return Workflow(name=wf.name, stages=stages, edges=wf.edges, source=source)


def _run_plans(worker: Interpreter, wf: Workflow, tmp_path: Path) -> dict[str, Any]:
    """The sink's output under three plans, each unit through ``worker``'s handler."""
    store = st.LocalStore(tmp_path / "store")
    units = WorkerUnits(worker, store, Path(wf.source.root))
    sink = next(s.id for s in wf.stages if not wf.successors(s.id))
    plans = {
        "no fusion": single_stage_plan(wf),
        "chains fused": chains_plan(wf),
        "bundles of 2": chains_plan(wf, bundle_size=2),
    }
    return {
        name: execute(wf, plan, units, store, workdir=tmp_path / "units").outputs[sink]
        for name, plan in plans.items()
    }


def _expected(dag_file: str) -> Any:
    import importlib

    wf, outputs = dag_workflow(dag_file)
    sink = next(s.id for s in wf.stages if not wf.successors(s.id))
    app = importlib.import_module(f"examples.apps.{APPS[dag_file]}")
    assert not differences(outputs[sink], app.run(**app.SIZES["small"]))  # the app's tasks
    return outputs[sink]


@pytest.mark.slow
@pytest.mark.airflow
@pytest.mark.parametrize("kind", ["airflow", "prefect"])
@pytest.mark.parametrize("app_file", list(APPS))
def test_example_units_run_where_the_frameworks_are_absent(
    lambda_env: Interpreter, tmp_path: Path, app_file: str, kind: str
) -> None:
    wf = dag_workflow(app_file)[0] if kind == "airflow" else flow_workflow(app_file)
    expected = _expected(app_file)
    results = _run_plans(lambda_env, wf, tmp_path)
    assert all(not differences(got, expected) for got in results.values()), results
    status = lambda_env.ask(op="status")
    assert status["real"] == [], status  # nothing of the real frameworks was imported
    # the file's framework is served by stand-ins (the other, too, if an earlier test of
    # this module imported one of its files into the same interpreter)
    framework = "airflow.sdk" if kind == "airflow" else "prefect"
    assert framework in status["stand_ins"] and "mode=auto" in status["finder"], status


@pytest.mark.slow
@pytest.mark.airflow
def test_always_hides_the_installed_frameworks(tmp_path: Path) -> None:
    """The local backend's mode: Airflow and Prefect installed, units still import neither."""
    worker = installed(**{shim.ENV: "always"})
    try:
        for app_file, kind in (("ml_pipeline.py", "airflow"), ("approx_svd.py", "prefect")):
            wf = dag_workflow(app_file)[0] if kind == "airflow" else flow_workflow(app_file)
            results = _run_plans(worker, wf, tmp_path / kind)
            expected = _expected(app_file)
            assert all(not differences(got, expected) for got in results.values()), results
        status = worker.ask(op="status")
    finally:
        worker.close()
    assert status["real"] == [] and "mode=always" in status["finder"], status
    assert {"airflow.sdk", "prefect"} <= set(status["stand_ins"]), status


# --------------------------------------------------------------------------- refusals

REFUSED_AT_IMPORT = {
    "variable_at_import.py": (
        """
        from airflow.sdk import Variable, dag, task

        BUCKET = Variable.get("bucket")
        """,
        3,
        "Variable.get() needs Airflow's metadata database",
        "os.environ",
    ),
    "context_at_import.py": (
        """
        from airflow.sdk import get_current_context

        ti = get_current_context()["ti"]
        """,
        3,
        "get_current_context() needs a running Airflow task instance",
        "pass what the task needs as arguments",
    ),
    "runtime_at_import.py": (
        """
        from prefect import flow
        from prefect.runtime import flow_run

        NAME = flow_run.name
        """,
        4,
        "prefect.runtime.flow_run.name needs a Prefect flow or task run context",
        "pass it to the task as an argument",
    ),
    "iterates_at_import.py": (
        """
        from airflow.sdk import dag, task

        @task
        def make():
            return [1, 2]

        for item in make():
            pass
        """,
        7,
        "TypeError: make() is a stand-in for a framework object and has no items",
        "docs/units.md",
    ),
}


@pytest.mark.parametrize("name", list(REFUSED_AT_IMPORT))
def test_what_a_file_may_not_do_at_import_is_refused_with_its_line(
    tmp_path: Path, name: str
) -> None:
    source, line, message, fix = REFUSED_AT_IMPORT[name]
    (tmp_path / name).write_text(textwrap.dedent(source).lstrip())
    with loader.framework_shim("always"), pytest.raises(CodeLoadError) as info:
        loader.load_module(name, tmp_path)
    err = info.value
    assert str(err).startswith(f"importing {name}:{line} (`"), str(err)
    assert message in str(err)
    assert fix in (err.hint or "")


RUN_TIME = """
import logging

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.sdk import Variable, get_current_context, task
from prefect import get_run_logger
from prefect import task as prefect_task
from prefect.runtime import task_run

HOOK = S3Hook(aws_conn_id="aws_default")


@task
def uses_context(x):
    return get_current_context()["params"]


@task
def uses_variable(x):
    return Variable.get("threshold")


@task
def uses_hook(x):
    return HOOK.read_key("k", bucket_name="b")


@prefect_task
def uses_task_run(x):
    return task_run.name


@prefect_task
def logs(x):
    logger = get_run_logger()
    logger.warning("got %s", x)
    return (logger.name, isinstance(logger, logging.Logger), x + 1)
"""


def test_what_a_task_may_not_do_on_lambda_is_refused_with_its_line(tmp_path: Path) -> None:
    from wisefuse_plugins.runtime.shim import UnsupportedOnLambda

    (tmp_path / "tasks.py").write_text(RUN_TIME.lstrip())
    lines = RUN_TIME.lstrip().splitlines()
    expected = {
        "uses_context": "get_current_context() needs a running Airflow task instance",
        "uses_variable": "Variable.get() needs Airflow's metadata database",
        "uses_hook": "S3Hook(...).read_key is a stand-in",
        "uses_task_run": "prefect.runtime.task_run.name needs a Prefect flow or task run context",
    }
    with loader.framework_shim("always"):
        module = loader.load_module("tasks.py", tmp_path)
        for name, message in expected.items():
            fn = loader.unwrap(getattr(module, name))
            with pytest.raises(UnsupportedOnLambda) as info:
                fn(1)
            line = next(i for i, text in enumerate(lines, 1) if f"def {name}(" in text) + 1
            assert str(info.value).startswith(f"{tmp_path / 'tasks.py'}:{line}: "), str(info.value)
            assert message in str(info.value)
            assert info.value.hint and "docs/units.md" in info.value.hint
        # a task's run logger is a standard logger on Lambda
        logs = loader.unwrap(module.logs)
        assert logs(1) == ("prefect.task_runs", True, 2)
    assert shim.active() is None  # the block is over: nothing left behind
    # (a copy: a thread that an earlier test started may import meanwhile)
    assert not [n for n, m in list(sys.modules.items()) if m is not None and shim.is_stand_in(m)]


UNIT_FILES = {
    # needs_context refuses while it runs; at_import refuses when a unit imports the file
    # (AWS_LAMBDA_FUNCTION_NAME is set there, not in this process that plans it)
    "ctx_dag.py": """
        from airflow.sdk import dag, get_current_context, task


        @task
        def needs_context(x: int) -> int:
            return get_current_context()["params"]["n"] + x


        @dag(schedule=None)
        def ctx_dag():
            needs_context(1)


        ctx_dag()
        """,
    "var_dag.py": """
        import os

        from airflow.sdk import Variable, task

        if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
            BUCKET = Variable.get("bucket")


        @task
        def at_import(x: int) -> int:
            return x
        """,
}


@pytest.mark.parametrize(
    ("file", "stage", "error_stage", "message"),
    [
        (
            "ctx_dag.py",
            "needs_context",
            "needs_context",
            "ctx_dag.py:6: get_current_context() needs a running Airflow task instance",
        ),
        (
            "var_dag.py",
            "at_import",
            "<setup>",
            'importing var_dag.py:6 (`BUCKET = Variable.get("bucket")`) failed: '
            "Variable.get() needs Airflow's metadata database",
        ),
    ],
)
def test_a_refusal_in_a_unit_reaches_the_response_with_its_line(
    lambda_env: Interpreter, tmp_path: Path, file: str, stage: str, error_stage: str, message: str
) -> None:
    """Through the handler where Airflow is absent: the unit's error names the line."""
    from tests.conftest import load_module_from_path
    from wisefuse_plugins.ir import Const, Stage

    root = tmp_path / "code"
    root.mkdir()
    (root / file).write_text(textwrap.dedent(UNIT_FILES[file]).lstrip())
    module = load_module_from_path(root / file, f"_shim_test_{file[:-3]}")  # real Airflow
    fn = getattr(module, stage).function
    st_ = Stage(id=stage, callable=callable_ref(fn, root), bindings={"x": Const(value=1)})
    wf = Workflow(name="refused", stages=[st_], source=Source(framework="airflow", root=str(root)))
    store = st.LocalStore(tmp_path / "store")
    units = WorkerUnits(lambda_env, store, root)
    with pytest.raises(RunFailed) as info:
        execute(wf, single_stage_plan(wf), units, store, workdir=tmp_path / "u")
    error = info.value.error
    assert error["stage"] == error_stage, error
    assert error["type"] in ("UnsupportedOnLambda", "CodeLoadError"), error
    assert message in error["message"], error["message"]
    assert "docs/units.md" in error["traceback"]  # the hint, as a note of the exception


def test_modes() -> None:
    assert shim.mode_from_env({}) == "auto"
    assert shim.mode_from_env({shim.ENV: " Always "}) == "always"
    with pytest.raises(WiseFuseError, match="is not one of auto, always, never"):
        shim.mode_from_env({shim.ENV: "sometimes"})
    # here both frameworks are installed: auto stands in for neither, in this process
    finder = shim.FrameworkFinder("auto")
    assert not finder.serves("airflow.sdk") and not finder.serves("prefect")
    assert shim.install("never") is None and shim.active() is None


CASES = Path(__file__).resolve().parent / "shim_cases"


@pytest.mark.parametrize(
    ("name", "functions"),
    [
        (
            "long_tail_dag.py",
            {"extract", "stats", "echo", "in_venv", "pick", "go", "conditional", "plain"},
        ),
        ("long_tail_flow.py", {"square", "add", "total", "fail", "slow", "inner", "tail"}),
    ],
)
def test_the_long_tail_of_module_level_code_imports(name: str, functions: set[str]) -> None:
    """Every import style, decorator flavour, operator and constant (see the files).

    In a fresh interpreter, as a unit's cold start is: in this process an earlier test's
    real Prefect (its background threads, modules they import late) can hand the file a
    real ``quote`` in place of the stand-in (seen once in CI, never alone)."""
    script = textwrap.dedent(
        f"""
        import json
        from pathlib import Path
        from wisefuse_plugins.runtime import loader

        cases = Path({str(CASES)!r})
        with loader.framework_shim("always"):
            module = loader.load_module({name!r}, cases)
            found = {{}}
            for fn_name in {sorted(functions)!r}:
                fn = loader.unwrap(getattr(module, fn_name))
                found[fn_name] = [fn.__qualname__, loader._defined_in(fn, cases / {name!r})]
        print(json.dumps(found))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {fn_name: [fn_name, True] for fn_name in functions}


@pytest.mark.prefect
def test_the_real_frameworks_logging_is_off_while_the_shim_is_in(tmp_path: Path) -> None:
    """A process that configured Prefect's logging (its handlers, the API-key filter that
    ``prefect.logging.get_logger`` puts on each logger) and then runs a unit in-process:
    that code must not run against the stand-ins. It failed the suite in CI when an
    earlier test had configured Prefect's logging."""
    from prefect.logging import get_logger
    from prefect.logging.configuration import setup_logging

    setup_logging(incremental=False)
    run_logger = get_logger("task_runs")
    before = (list(logging.getLogger().handlers), list(run_logger.handlers), run_logger.filters)
    assert any(type(f).__module__.startswith("prefect.") for f in run_logger.filters)
    (tmp_path / "tasks.py").write_text(RUN_TIME.lstrip())
    with loader.framework_shim("always"):
        logs = loader.unwrap(loader.load_module("tasks.py", tmp_path).logs)
        assert logs(1) == ("prefect.task_runs", True, 2)
        assert not run_logger.filters and not run_logger.handlers
    after = (list(logging.getLogger().handlers), list(run_logger.handlers), run_logger.filters)
    assert after == before  # put back
