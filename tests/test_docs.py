"""The docs stay true to the code.

1. ``docs/troubleshooting.md`` quotes messages users see. Each quote is a ```` ```text ````
   block after a ``<!-- message: NAME -->`` marker; :data:`TRIGGERS` holds, per name, a
   function that makes that message happen for real (the ``wisefuse`` CLI in-process, or
   the Python API where the message is logged or raised outside the CLI) and returns what
   the user sees. The quote must match it, whitespace aside; ``<UPPER_CASE>`` words in a
   quote stand for values that vary (paths, names, figures), the same word for the same
   value. A changed message fails here until the page says what the code says.
2. Every shell command shown in README.md and docs/*.md (in ``bash``/``console``/``text``/bare
   fenced blocks, and inline code that starts like a command) is checked: ``wisefuse``
   commands against the CLI's own parser (subcommand, options, arguments; the cheap ones
   are run), ``benchmarks/*.py`` lines against each script's argparse parser, ``make``
   targets against the Makefile, ``pip install`` extras against pyproject.toml; anything
   else must be in :data:`NOT_RUN` with the reason it is not executed here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import os
import re
import shutil
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TROUBLESHOOTING = REPO / "docs" / "troubleshooting.md"
TOY = REPO / "tests" / "runtime" / "toy"
DATA = REPO / "tests" / "data"


# =========================================================================== 1. messages

_QUOTE = re.compile(r"<!-- message: ([a-z0-9-]+) -->\s*\n```text\n(.*?)\n```", re.S)
_PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*)>")


def quoted_messages() -> dict[str, str]:
    """``name -> quoted text`` of every marked quote on the troubleshooting page."""
    text = TROUBLESHOOTING.read_text(encoding="utf-8")
    found: dict[str, str] = {}
    for name, quote in _QUOTE.findall(text):
        assert name not in found, f"message {name!r} is quoted twice"
        found[name] = quote
    return found


def _squeeze(text: str) -> str:
    return " ".join(text.split())


def quote_pattern(quote: str) -> re.Pattern[str]:
    """The quote as a regex: literal text, each ``<NAME>`` any text (the same each time)."""
    quote, parts, seen, pos = _squeeze(quote), [], set(), 0
    for m in _PLACEHOLDER.finditer(quote):
        parts.append(re.escape(quote[pos : m.start()]))
        name = m.group(1)
        parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>.+?)")
        seen.add(name)
        pos = m.end()
    parts.append(re.escape(quote[pos:]))
    return re.compile("".join(parts), re.S)


def test_quote_patterns_are_strict():
    assert quote_pattern("error: '<FILE>' does not exist").fullmatch("error: 'a.py' does not exist")
    assert not quote_pattern("error: '<FILE>' is gone").fullmatch("error: 'a.py' does not exist")
    same = quote_pattern("'<F>' ... pass <F> alone")
    assert same.fullmatch("'x.json' ... pass x.json alone")
    assert not same.fullmatch("'x.json' ... pass y.json alone")


@dataclass
class Scene:
    """What the triggers share: a scratch folder (the working directory), the in-process CLI,
    and files made once (an Airflow DAG folder, a Prefect flow, copies of the toy app)."""

    root: Path
    mp: pytest.MonkeyPatch
    made: dict[str, Any] = field(default_factory=dict)

    # -- the CLI, in this process (a new interpreter per message would take minutes) -------

    def run(self, *argv: str) -> tuple[int, str, str]:
        from wisefuse_plugins import cli

        out, err = io.StringIO(), io.StringIO()
        code = 0
        with (
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            self._wide(cli.console),
            self._wide(cli.err_console),
        ):
            try:
                cli.main(list(argv))
            except SystemExit as done:
                code = done.code if isinstance(done.code, int) else 1
        return code, out.getvalue(), err.getvalue()

    @staticmethod
    @contextlib.contextmanager
    def _wide(console: Any) -> Iterator[None]:
        """No wrapping: a quote is compared with what the CLI prints, not where lines break."""
        before, console._width = console._width, 10_000
        try:
            yield
        finally:
            console._width = before

    def error(self, *argv: str) -> str:
        """The ``error:`` and ``hint:`` lines of a command that fails as it should (exit 2)."""
        code, out, err = self.run(*argv)
        assert code == 2, f"wisefuse {' '.join(argv)} exited {code}:\n{out}\n{err}"
        start = re.search(r"^error: ", err, re.M)
        assert start, err
        return err[start.start() :]

    # -- files ------------------------------------------------------------------------------

    def once(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self.made:
            self.made[key] = make()
        return self.made[key]

    def write(self, relpath: str, text: str) -> Path:
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    def toy(self) -> Path:
        """A copy of the toy app (tests/runtime/toy) and its IR: ``toy/toy.ir.json``."""

        def make() -> Path:
            shutil.copytree(TOY, self.root / "toy", ignore=shutil.ignore_patterns("__pycache__"))
            return self.root / "toy" / "toy.ir.json"

        return self.once("toy", make)

    def archive(self, name: str, durations_ms: dict[str, float]) -> str:
        """A profile archive with samples of the toy's stages (50 ms unless given)."""
        from wisefuse_plugins.ir import load
        from wisefuse_plugins.profiles.archive import Archive, Sample

        url = f"sqlite:///{self.root / name}"
        wf = load(self.toy())
        with Archive(url) as archive:
            archive.add(
                Sample(
                    workflow=wf.name,
                    stage=s.id,
                    code_hash=s.callable.code_hash,
                    memory_mb=m,
                    duration_ms=durations_ms.get(s.id, 50.0) * 1769 / min(m, 1769) * (1 + k / 50),
                    instance=k,
                )
                for s in wf.python_stages
                for m in (512, 1769, 3538)
                for k in range(5)
            )
        return url


def _load_module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _logged(logger_name: str) -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger, handler = logging.getLogger(logger_name), Keep(level=logging.DEBUG)
    before = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)


def _raised(call: Callable[[], Any]) -> str:
    """What a traceback ends with: ``module.Error: message`` and the hint note, if any."""
    import traceback

    try:
        call()
    except Exception as err:  # any error: it is what the user would see
        return "".join(traceback.format_exception_only(err))
    raise AssertionError("no error was raised")


TRIGGERS: dict[str, Callable[[Scene], str]] = {}


def trigger(name: str) -> Callable[[Callable[[Scene], str]], Callable[[Scene], str]]:
    def register(fn: Callable[[Scene], str]) -> Callable[[Scene], str]:
        assert name not in TRIGGERS
        TRIGGERS[name] = fn
        return fn

    return register


# -- installing ------------------------------------------------------------------------------


@trigger("missing-airflow")
def _(sc: Scene) -> str:
    import wisefuse_plugins.adapters.airflow as adapter

    def version(name: str) -> str:
        raise PackageNotFoundError(name)

    with sc.mp.context() as mp:
        mp.setattr(adapter, "version", version)
        return sc.error("inspect", str(REPO / "airflow" / "video_analytics.py"))


@trigger("missing-prefect")
def _(sc: Scene) -> str:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "prefect" else real(name, *args)

    with sc.mp.context() as mp:
        mp.setattr(importlib.util, "find_spec", find_spec)
        return sc.error("inspect", str(REPO / "prefect" / "video_analytics.py"))


@trigger("missing-boto3")
def _(sc: Scene) -> str:
    ir, plan = sc.toy(), _toy_plan(sc)
    with sc.mp.context() as mp:
        mp.setitem(sys.modules, "boto3", None)  # `import boto3` raises ImportError
        return sc.error(
            "deploy", str(ir), str(plan), "--role", "arn:aws:iam::1:role/r", "--store", "s3://b/p"
        )


# -- reading a workflow ------------------------------------------------------------------------


@trigger("target-missing")
def _(sc: Scene) -> str:
    return sc.error("inspect", "dags/etl_daily.py")


@trigger("target-unknown-kind")
def _(sc: Scene) -> str:
    sc.write("etl.yaml", "steps: []\n")
    return sc.error("inspect", "etl.yaml")


@trigger("ir-missing")
def _(sc: Scene) -> str:
    return sc.error("inspect", "etl.ir.json")


@trigger("ir-not-json")
def _(sc: Scene) -> str:
    return sc.error("inspect", str(DATA / "not_json.ir.json"))


@trigger("ir-cycle")
def _(sc: Scene) -> str:
    return sc.error("inspect", str(DATA / "cyclic.ir.json"))


@trigger("ir-is-a-plan")
def _(sc: Scene) -> str:
    return sc.error("inspect", str(_toy_plan(sc)))


@trigger("ir-version")
def _(sc: Scene) -> str:
    doc = json.loads((DATA / "video_analytics.ir.json").read_text())
    doc["version"] = 2
    sc.write("newer.ir.json", json.dumps(doc))
    return sc.error("inspect", "newer.ir.json")


@trigger("ir-entry")
def _(sc: Scene) -> str:
    return sc.error("inspect", f"{sc.toy()}::toy")


def _dags(sc: Scene) -> Path:
    """A DAG folder with the usual mistakes."""

    def make() -> Path:
        sc.write(
            "dags/broken.py",
            """
            from airflow.sdk import dag, task
            import not_installed_anywhere
            """,
        )
        sc.write(
            "dags/no_dag.py",
            """
            from airflow.sdk import task

            @task
            def extract():
                return [1, 2, 3]
            """,
        )
        sc.write(
            "dags/two_dags.py",
            """
            from airflow.sdk import dag, task

            @task
            def extract():
                return [1, 2, 3]

            @dag(dag_id="etl_daily", schedule=None)
            def etl_daily():
                extract()

            @dag(dag_id="etl_hourly", schedule=None)
            def etl_hourly():
                extract()

            etl_daily()
            etl_hourly()
            """,
        )
        return sc.root / "dags"

    return sc.once("dags", make)


@trigger("dag-import-fails")
def _(sc: Scene) -> str:
    _dags(sc)
    return sc.error("inspect", "dags/broken.py")


@trigger("dag-none")
def _(sc: Scene) -> str:
    _dags(sc)
    return sc.error("inspect", "dags/no_dag.py")


@trigger("dag-several")
def _(sc: Scene) -> str:
    _dags(sc)
    return sc.error("inspect", "dags/two_dags.py")


@trigger("dag-unknown-id")
def _(sc: Scene) -> str:
    _dags(sc)
    return sc.error("inspect", "dags/two_dags.py::etl_weekly")


def _flows(sc: Scene) -> Path:
    def make() -> Path:
        sc.write(
            "flows/no_flow.py",
            """
            from prefect import task

            @task
            def extract():
                return [1, 2, 3]
            """,
        )
        sc.write(
            "flows/two_flows.py",
            """
            from prefect import flow

            @flow
            def etl_daily():
                return 1

            @flow
            def etl_hourly():
                return 2
            """,
        )
        return sc.root / "flows"

    return sc.once("flows", make)


@trigger("flow-none")
def _(sc: Scene) -> str:
    _flows(sc)
    return sc.error("inspect", "flows/no_flow.py")


@trigger("flow-several")
def _(sc: Scene) -> str:
    _flows(sc)
    return sc.error("inspect", "flows/two_flows.py")


@trigger("flow-unknown")
def _(sc: Scene) -> str:
    _flows(sc)
    return sc.error("inspect", "flows/two_flows.py::etl_weekly")


# -- profiling ---------------------------------------------------------------------------------


@trigger("profile-memory-list")
def _(sc: Scene) -> str:
    return sc.error("profile", str(sc.toy()), "--memory", "512MB,2GB")


@trigger("profile-memory-range")
def _(sc: Scene) -> str:
    return sc.error("profile", str(sc.toy()), "--memory", "64,512", "--db", "sqlite://")


@trigger("profile-opaque")
def _(sc: Scene) -> str:
    return sc.error("profile", str(DATA / "video_analytics.ir.json"), "--db", "sqlite://")


@trigger("profile-task-fails")
def _(sc: Scene) -> str:
    from wisefuse_plugins.ir import code_hash

    toy = sc.toy()
    doc = json.loads(toy.read_text())
    boom = _load_module(toy.parent / "toy_app.py", "_wisefuse_docs_toy_app").boom
    for stage in doc["workflow"]["stages"]:
        if stage["id"] == "middle":  # add(y) becomes boom(y), which fails on y == 4
            stage["callable"].update(qualname="boom", code_hash=code_hash(boom))
    failing = toy.with_name("failing.ir.json")
    failing.write_text(json.dumps(doc))
    return sc.error(
        "profile", str(failing), "--memory", "512", "--runs", "1", "--no-calibrate",
        "--no-preload", "--db", f"sqlite:///{sc.root / 'failing.sqlite'}",
    )  # fmt: skip


@trigger("archive-url")
def _(sc: Scene) -> str:
    return sc.error("optimize", str(sc.toy()), "--db", "profiles.sqlite")


# -- planning ----------------------------------------------------------------------------------


def _toy_plan(sc: Scene) -> Path:
    def make() -> Path:
        from wisefuse_plugins.ir import load
        from wisefuse_plugins.optimizer.plan import dump_plan, single_stage_plan

        return dump_plan(single_stage_plan(load(sc.toy())), sc.root / "toy" / "toy.plan.json")

    return sc.once("toy-plan", make)


@trigger("no-profiles")
def _(sc: Scene) -> str:
    return sc.error("optimize", str(sc.toy()), "--db", f"sqlite:///{sc.root / 'empty.sqlite'}")


@trigger("slo-unreadable")
def _(sc: Scene) -> str:
    db = sc.once("toy-db", lambda: sc.archive("toy.sqlite", {}))
    return sc.error("optimize", str(sc.toy()), "--slo", "fast", "--db", db)


@trigger("slo-not-positive")
def _(sc: Scene) -> str:
    db = sc.once("toy-db", lambda: sc.archive("toy.sqlite", {}))
    return sc.error("optimize", str(sc.toy()), "--slo", "0", "--db", db)


@trigger("slo-not-met")
def _(sc: Scene) -> str:
    db = sc.once("toy-db", lambda: sc.archive("toy.sqlite", {}))
    code, _, err = sc.run(
        "optimize", str(sc.toy()), "--slo", "0.01", "--db", db, "-o", str(sc.root / "fast.json")
    )
    assert code == 0, err
    assert (sc.root / "fast.json").exists()  # the fastest plan is still written
    return err


@trigger("stage-over-timeout")
def _(sc: Scene) -> str:
    db = sc.archive("slow.sqlite", {"square": 2_000_000.0})
    return sc.error("optimize", str(sc.toy()), "--db", db)


def _etl_dag(sc: Scene, version: int) -> Path:
    """``dags/etl.py``, ending with the drop-in line; version 2 changes ``total``."""
    body = "sum(values)" if version == 1 else "sum(values) + 0  # changed"
    return sc.write(
        "dags/etl.py",
        f"""
        from pathlib import Path

        from airflow.sdk import dag, task

        from wisefuse_plugins.airflow import rewrite


        @task
        def extract() -> list[int]:
            return [1, 2, 3]


        @task
        def total(values: list[int]) -> int:
            return {body}


        @dag(dag_id="etl", schedule=None)
        def etl():
            total(extract())


        dag = rewrite(etl(), Path(__file__).with_name("etl.plan.json"))
        """,
    )


def _etl_stale(sc: Scene) -> dict[str, str]:
    """The drop-in DAG before its plan exists, planned, then changed: what each load logs."""

    def make() -> dict[str, str]:
        from wisefuse_plugins.adapters.airflow import workflow_from_file
        from wisefuse_plugins.optimizer.plan import dump_plan, single_stage_plan

        said = {}
        path = _etl_dag(sc, 1)
        with _logged("wisefuse_plugins.airflow") as records:
            _load_module(path, "_wisefuse_docs_etl_v1")
        said["missing"] = "\n".join(r.getMessage() for r in records if r.levelno >= logging.WARNING)
        dump_plan(single_stage_plan(workflow_from_file(path)), path.with_name("etl.plan.json"))
        _etl_dag(sc, 2)
        with _logged("wisefuse_plugins.airflow") as records:
            _load_module(path, "_wisefuse_docs_etl_v2")
        said["stale"] = "\n".join(r.getMessage() for r in records if r.levelno >= logging.WARNING)
        return said

    return sc.once("etl-stale", make)


@trigger("plan-stale")
def _(sc: Scene) -> str:
    _etl_stale(sc)
    return sc.error("report", "dags/etl.py", "dags/etl.plan.json")


@trigger("plan-is-an-ir")
def _(sc: Scene) -> str:
    return sc.error("report", str(sc.toy()), str(sc.toy()))


# -- running locally ---------------------------------------------------------------------------


@trigger("report-suffix")
def _(sc: Scene) -> str:
    return sc.error("report", str(sc.toy()), str(_toy_plan(sc)), "-o", "report.pdf")


@trigger("demo-app")
def _(sc: Scene) -> str:
    return sc.error("demo", "--app", "etl")


# -- deploying to AWS --------------------------------------------------------------------------

_AWS_ARGS = ("--role", "arn:aws:iam::123456789012:role/wisefuse-fn", "--store", "s3://my-bucket/wf")


@contextlib.contextmanager
def _no_aws_account(sc: Scene, **env: str) -> Iterator[None]:
    """No AWS credentials or region anywhere boto3 looks (and a fresh boto3 session)."""
    import boto3

    with sc.mp.context() as mp:
        for name in list(os.environ):
            if name.startswith("AWS_"):
                mp.delenv(name)
        mp.setenv("AWS_CONFIG_FILE", str(sc.root / "no-aws-config"))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(sc.root / "no-aws-credentials"))
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        for name, value in env.items():
            mp.setenv(name, value)
        mp.setattr(boto3, "DEFAULT_SESSION", None)
        yield


@trigger("deploy-store")
def _(sc: Scene) -> str:
    return sc.error(
        "deploy", str(sc.toy()), str(_toy_plan(sc)), "--role", _AWS_ARGS[1], "--store", "/tmp/wf"
    )


@trigger("deploy-no-region")
def _(sc: Scene) -> str:
    with _no_aws_account(sc):
        return sc.error("deploy", str(sc.toy()), str(_toy_plan(sc)), *_AWS_ARGS)


@trigger("deploy-no-credentials")
def _(sc: Scene) -> str:
    with _no_aws_account(sc, AWS_DEFAULT_REGION="eu-west-1"):
        return sc.error("deploy", str(sc.toy()), str(_toy_plan(sc)), *_AWS_ARGS)


@trigger("deploy-opaque")
def _(sc: Scene) -> str:
    from wisefuse_plugins.optimizer.plan import dump_plan, single_stage_plan
    from wisefuse_plugins.targets import load_workflow

    ir = DATA / "video_analytics.ir.json"
    plan = dump_plan(single_stage_plan(load_workflow(ir)), sc.root / "video.plan.json")
    return sc.error("deploy", str(ir), str(plan), *_AWS_ARGS, "--region", "eu-west-1")


# -- Airflow -----------------------------------------------------------------------------------


@trigger("airflow-plan-missing")
def _(sc: Scene) -> str:
    return _etl_stale(sc)["missing"]


@trigger("airflow-plan-stale")
def _(sc: Scene) -> str:
    return _etl_stale(sc)["stale"]


@trigger("airflow-task-uses-context")
def _(sc: Scene) -> str:
    path = sc.write(
        "dags/uses_context.py",
        """
        from airflow.sdk import dag, task

        @task.wisefuse_lambda(memory_mb=1769)
        def total(values, ti=None):
            return sum(values)

        @dag(dag_id="uses_context", schedule=None)
        def uses_context():
            total([1, 2])

        uses_context()
        """,
    )
    return _raised(lambda: _load_module(path, "_wisefuse_docs_uses_context"))


@trigger("airflow-task-nested")
def _(sc: Scene) -> str:
    path = sc.write(
        "dags/nested.py",
        """
        from airflow.sdk import dag, task

        @dag(dag_id="nested", schedule=None)
        def nested():
            @task.wisefuse_lambda(memory_mb=1769)
            def total(values):
                return sum(values)

            total([1, 2])

        nested()
        """,
    )
    return _raised(lambda: _load_module(path, "_wisefuse_docs_nested"))


@trigger("airflow-aws-store")
def _(sc: Scene) -> str:
    from wisefuse_plugins.providers.airflow.hooks import WiseFuseLambdaHook

    with sc.mp.context() as mp:
        mp.delenv("WISEFUSE_STORE", raising=False)
        return _raised(lambda: WiseFuseLambdaHook(backend="aws").store_url)


# -- Prefect -----------------------------------------------------------------------------------


def _flow_file(sc: Scene, version: int) -> ModuleType:
    """``flows/numbers.py``, a flow under ``@wisefuse``; version 2 changes ``double``."""
    body = "n * 2" if version == 1 else "n + n  # changed"
    sc.write(
        "flows/numbers.py",
        f"""
        from prefect import flow, task

        from wisefuse_plugins.prefect import wisefuse


        @task
        def double(n: int) -> int:
            return {body}


        @wisefuse(slo="1.5x")
        @flow(name="numbers")
        def numbers(n: int = 4) -> int:
            return double(n)
        """,
    )
    return _load_module(sc.root / "flows" / "numbers.py", f"_wisefuse_docs_numbers_v{version}")


def _trace(flow_module: ModuleType, n: int, path: Path) -> Any:
    """The IR a traced run of ``numbers(n)`` records (what the decorator checks plans against)."""
    from wisefuse_plugins.ir import Const, Source, Stage, Workflow, callable_ref, dump

    root = Path(flow_module.__file__).parent
    stage = Stage(
        id="double",
        name="double",
        callable=callable_ref(flow_module.double.fn, root),
        bindings={"n": Const(value=n)},
    )
    wf = Workflow(
        name="numbers",
        stages=[stage],
        source=Source(framework="prefect", root=str(root), path="numbers.py", entry="numbers"),
        meta={"parameters": {"n": n}, "returns": {"kind": "stage", "stage": "double"}},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    dump(wf, path)
    return wf


def _prefect_checks(sc: Scene) -> dict[str, Any]:
    """What ``@wisefuse`` decides, call by call, as the flow and its plan change."""

    def make() -> dict[str, Any]:
        from wisefuse_plugins.optimizer.plan import dump_plan, single_stage_plan

        home = sc.root / "wisefuse-home"
        v1 = _flow_file(sc, 1)
        said = {"no-plan": v1.numbers.check()}
        latest, exact = v1.numbers.trace_paths(v1.numbers.call_parameters())
        assert exact is not None
        traced = _trace(v1, 4, exact)  # the first call ran plain and recorded this
        _trace(v1, 4, latest)
        (home / "plans").mkdir(parents=True, exist_ok=True)
        dump_plan(single_stage_plan(traced), home / "plans" / "numbers.plan.json")
        assert v1.numbers.check().planned  # the next call runs under the plan
        said["other-parameters"] = v1.numbers.check(n=8)
        v2 = _flow_file(sc, 2)  # the task's code changes
        said["code-changed"] = v2.numbers.check()
        _trace(v2, 4, exact)  # that call ran plain and recorded a new trace
        said["plan-stale"] = v2.numbers.check()
        return said

    return sc.once("prefect", make)


def _reason(check: Any, level: int) -> str:
    assert not check.planned and check.level == level, check
    return check.reason


@trigger("prefect-no-plan")
def _(sc: Scene) -> str:
    return _reason(_prefect_checks(sc)["no-plan"], logging.INFO)


@trigger("prefect-other-parameters")
def _(sc: Scene) -> str:
    return _reason(_prefect_checks(sc)["other-parameters"], logging.WARNING)


@trigger("prefect-code-changed")
def _(sc: Scene) -> str:
    return _reason(_prefect_checks(sc)["code-changed"], logging.WARNING)


@trigger("prefect-plan-stale")
def _(sc: Scene) -> str:
    return _reason(_prefect_checks(sc)["plan-stale"], logging.WARNING)


@trigger("prefect-decorator-order")
def _(sc: Scene) -> str:
    path = sc.write(
        "flows/order.py",
        """
        from prefect import flow

        from wisefuse_plugins.prefect import wisefuse

        @flow
        @wisefuse(slo="1.5x")
        def numbers(n: int = 4) -> int:
            return n
        """,
    )
    return _raised(lambda: _load_module(path, "_wisefuse_docs_order"))


@trigger("prefect-block-role")
def _(sc: Scene) -> str:
    from wisefuse_plugins.prefect import WiseFuseLambda

    block = WiseFuseLambda(backend="aws", store_url="s3://my-bucket/wf")
    return _raised(lambda: block.make_backend(sc.root, "numbers"))


# -- the test ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    root = tmp_path_factory.mktemp("troubleshooting")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("WISEFUSE_HOME", str(root / "wisefuse-home"))
        mp.delenv("WISEFUSE_DB_URL", raising=False)
        mp.setenv("COLUMNS", "10000")
        yield Scene(root, mp)


def test_every_quoted_message_has_a_trigger_and_every_trigger_a_quote():
    quoted = quoted_messages()
    assert sorted(set(quoted) - set(TRIGGERS)) == [], "quoted, but nothing makes it happen"
    assert sorted(set(TRIGGERS) - set(quoted)) == [], "made to happen, but not quoted"


@pytest.mark.parametrize("name", sorted(TRIGGERS))
def test_quoted_message_is_what_the_user_sees(scene: Scene, name: str):
    quote = quoted_messages().get(name)
    assert quote is not None, f"docs/troubleshooting.md does not quote {name!r}"
    produced = TRIGGERS[name](scene)
    assert quote_pattern(quote).fullmatch(_squeeze(produced)), (
        f"docs/troubleshooting.md, message {name!r}, says:\n{quote}\n\nbut the user sees:\n{produced}"
    )
