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
import functools
import importlib.util
import io
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import tomllib
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
        from wisefuse_plugins.model.profile import Platform
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
            # calibrated, as `wisefuse profile --calibrate` leaves it (no calibration warning)
            archive.save_platform(Platform(name="local"))
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
    from wisefuse_plugins.adapters.airflow import access

    def version(name: str) -> str:
        raise PackageNotFoundError(name)

    with sc.mp.context() as mp:
        mp.setattr(access, "version", version)
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
        from wisefuse_plugins.plan.schema import dump_plan, single_stage_plan

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


@trigger("feedback-backend")
def _(sc: Scene) -> str:
    db = sc.once("toy-db", lambda: sc.archive("toy.sqlite", {}))
    return sc.error("optimize", str(sc.toy()), "--feedback", "3", "--backend", "aws", "--db", db)


@trigger("stage-over-timeout")
def _(sc: Scene) -> str:
    db = sc.archive("slow.sqlite", {"square": 2_000_000.0})
    return sc.error("optimize", str(sc.toy()), "--db", db)


def _etl_dag(sc: Scene, version: int, relpath: str = "dags/etl.py") -> Path:
    """``dags/etl.py``, ending with the drop-in line; version 2 changes ``total``."""
    body = "sum(values)" if version == 1 else "sum(values) + 0  # changed"
    return sc.write(
        relpath,
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
        from wisefuse_plugins.plan.schema import dump_plan, single_stage_plan

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
    from wisefuse_plugins.plan.schema import dump_plan, single_stage_plan
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


def _etl_copy(sc: Scene, folder: str) -> Path:
    """The drop-in ``dags/etl.py`` (version 1) as ``<folder>/dags/etl.py``."""
    return _etl_dag(sc, 1, f"{folder}/dags/etl.py")


def _warnings_of(path: Path, name: str) -> str:
    with _logged("wisefuse_plugins.airflow") as records:
        _load_module(path, name)
    return "\n".join(r.getMessage() for r in records if r.levelno >= logging.WARNING)


@trigger("airflow-plan-waiting")
def _(sc: Scene) -> str:
    """The plan file replaced after a task of run ``manual__1`` parsed the DAG file."""
    from airflow.sdk.definitions._internal.dag_parsing_context import (
        _airflow_parsing_context_manager,
    )
    from structlog.contextvars import bound_contextvars

    from wisefuse_plugins.adapters.airflow import workflow_from_file
    from wisefuse_plugins.plan.schema import dump_plan, single_stage_plan

    path = _etl_copy(sc, "waiting")
    wf = workflow_from_file(path)
    dump_plan(single_stage_plan(wf), path.with_name("etl.plan.json"))
    _load_module(path, "_wisefuse_docs_waiting_1")  # the dag-processor
    with (  # a task process of run manual__1, as Airflow's task runner parses
        bound_contextvars(run_id="manual__1"),
        _airflow_parsing_context_manager(dag_id="etl", task_id="total"),
    ):
        _load_module(path, "_wisefuse_docs_waiting_2")
    dump_plan(single_stage_plan(wf, memory_mb=1024), path.with_name("etl.plan.json"))
    return _warnings_of(path, "_wisefuse_docs_waiting_3")


def _etl_emitted(sc: Scene, folder: str) -> tuple[Path, Any]:
    """``etl_wisefuse.py`` with its plan and IR files, emitted beside a copy of ``etl.py``."""
    from wisefuse_plugins.adapters.airflow import from_dag, load_dag_file
    from wisefuse_plugins.emitters.airflow import write_dag
    from wisefuse_plugins.plan.schema import single_stage_plan

    path = _etl_copy(sc, folder)
    original = load_dag_file(path, "etl")
    wf = from_dag(original)
    return write_dag(wf, single_stage_plan(wf), path.parent, dag=original), wf


@trigger("airflow-plan-scheduling")
def _(sc: Scene) -> str:
    """A hand-written plan fusing two tasks of different pools, under the drop-in."""
    from wisefuse_plugins.adapters.airflow import workflow_from_file
    from wisefuse_plugins.plan.schema import Plan, Unit, dump_plan, hashes_of

    path = sc.write(
        "pools/dags/etl.py",
        """
        from pathlib import Path

        from airflow.sdk import dag, task

        from wisefuse_plugins.airflow import rewrite


        @task(pool="io_pool")
        def extract() -> list[int]:
            return [1, 2, 3]


        @task
        def total(values: list[int]) -> int:
            return sum(values)


        @dag(dag_id="etl", schedule=None)
        def etl():
            total(extract())


        dag = rewrite(etl(), Path(__file__).with_name("etl.plan.json"))
        """,
    )
    wf = workflow_from_file(path)
    fused = Unit(id="extract-total", stages=["extract", "total"])
    dump_plan(
        Plan(workflow=wf.name, units=[fused], code_hashes=hashes_of(wf)),
        path.with_name("etl.plan.json"),
    )
    return _warnings_of(path, "_wisefuse_docs_pools")


@trigger("airflow-emitted-plan-missing")
def _(sc: Scene) -> str:
    """A unit task of an emitted DAG deployed without its plan file."""
    from wisefuse_plugins.providers.airflow.planfiles import PlanFileError

    emitted, _ = _etl_emitted(sc, "emitted-missing")
    emitted.with_name("etl_wisefuse.plan.json").unlink()
    dag = _load_module(emitted, "_wisefuse_docs_emitted_missing").dag
    with pytest.raises(PlanFileError) as err:
        dag.task_dict["total"].resolve()
    return f"PlanFileError: {err.value}\nhint: {err.value.hint}"


@trigger("airflow-emitted-plan-replaced")
def _(sc: Scene) -> str:
    """An emitted DAG's plan file replaced by another plan, after a parse kept a snapshot."""
    from wisefuse_plugins.plan.schema import dump_plan, single_stage_plan

    emitted, wf = _etl_emitted(sc, "emitted-replaced")
    _load_module(emitted, "_wisefuse_docs_emitted_replaced_1")
    dump_plan(single_stage_plan(wf, memory_mb=1024), emitted.with_name("etl_wisefuse.plan.json"))
    return _warnings_of(emitted, "_wisefuse_docs_emitted_replaced_2")


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
        from wisefuse_plugins.plan.schema import dump_plan, single_stage_plan

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
    return _reason(_prefect_checks(sc)["no-plan"], logging.WARNING)


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


@pytest.mark.airflow  # DAG files are parsed with DagBag
@pytest.mark.parametrize("name", sorted(TRIGGERS))
def test_quoted_message_is_what_the_user_sees(scene: Scene, name: str):
    quote = quoted_messages().get(name)
    assert quote is not None, f"docs/troubleshooting.md does not quote {name!r}"
    produced = TRIGGERS[name](scene)
    assert quote_pattern(quote).fullmatch(_squeeze(produced)), (
        f"docs/troubleshooting.md, message {name!r}, says:\n{quote}\n\nbut the user sees:\n{produced}"
    )


# =========================================================================== 2. commands

_SHELL_FENCES = {"", "bash", "sh", "shell", "console", "text"}
_COMMANDS = {"wisefuse", "make", "python", "python3", "pip", "airflow", "prefect", "aws", "uv"}
_SHELL_OPERATORS = {"|", ">", ">>", "<", "&&", "||", ";", "2>&1", "&"}

NOT_RUN: dict[str, str] = {
    "python -m wisefuse_plugins.runtime.backends.service --port 0 --root ... --idle-timeout ...": (
        "what the hook runs to start the service (tests/runtime/test_service_ondemand.py)"
    ),
    # command as the docs show it (whitespace squeezed) -> why this test does not run it
    "python FILE": "a placeholder for the user's own DAG file",
    "python flow.py": "a placeholder for the user's own flow file",
    "python my_flow_planned.py": "a placeholder for a flow file the user emitted",
    "python worker.py CONFIG": "how the local backend starts its own workers, not a user command",
    "python runtime/backends/forkserver.py": "how the local backend starts its fork server, "
    "not a user command",
    "airflow providers list": "needs an Airflow installation with a metadata database; "
    "tests/providers/test_airflow_provider.py checks the provider entry point it lists",
    "airflow api-server --port 8080 & airflow scheduler & airflow dag-processor &": "starts "
    "a deployment; tests/live/airflow_live.py starts these three processes with the "
    "documented environment (airflow_env) for every live test",
    "airflow dags list-import-errors": "needs a deployment; tests/live checks import errors "
    "through the API (AirflowLive.import_errors)",
    "airflow tasks states-for-dag-run": "needs a deployment; tests/live reads task states "
    "through the API (AirflowLive.task_instances)",
    "python -m wisefuse_plugins.runtime.backends.service --port 9001 [--root DIR]": "a "
    "long-running service; tests/runtime/test_lambda_service.py starts it with serve() and "
    "drives it with boto3",
    "airflow db migrate": "creates Airflow's metadata database; the airflow_home fixture of "
    "tests/conftest.py runs it for the tests that need one",
    "prefect block register -m wisefuse_plugins.providers.prefect": "needs a Prefect server; "
    "tests/providers/test_prefect_block.py saves and loads the block",
    "prefect deploy": "needs a Prefect server and a work pool",
    "prefect server start": "a long-running server: tests/live_prefect starts one",
    "prefect work-pool create my-pool --type process": "needs a Prefect server: "
    "tests/live_prefect/test_deployments.py creates one",
    "pip install": "prose: installing the requirements into a container image",
    "aws sts get-caller-identity": "needs an AWS account",
}


@dataclass(frozen=True)
class DocCommand:
    where: str  # file:line
    text: str  # whitespace squeezed, comments and the prompt removed

    @property
    def tokens(self) -> list[str]:
        """Shell words up to the first pipe or redirection."""
        words = []
        for word in shlex.split(self.text):
            if word in _SHELL_OPERATORS:
                break
            words.append(word)
        return words


def _is_command(text: str) -> bool:
    words = text.split()
    if not words:
        return False
    first = words[0]
    if re.fullmatch(r"benchmarks/\w+\.py", first) or first.startswith(".venv/bin/"):
        return True
    if first == "make":  # `make demo`, not the stage `make -> work -> total`
        return len(words) > 1 and all(re.fullmatch(r"[\w.-]+(=\S*)?", w) for w in words[1:])
    return first in _COMMANDS and (len(words) > 1 or first == "pip")


def doc_commands() -> list[DocCommand]:
    """Every command shown in README.md and docs/*.md: fenced shell lines and inline code."""
    found = []
    for doc in DOCS:
        rel = doc.relative_to(REPO)
        lines = doc.read_text(encoding="utf-8").splitlines()
        prose: list[tuple[int, str]] = []
        i = 0
        while i < len(lines):
            fence = re.match(r"\s*```\s*(\w*)", lines[i])
            if not fence:
                prose.append((i + 1, lines[i]))
                i += 1
                continue
            end = next(j for j in range(i + 1, len(lines)) if re.match(r"\s*```\s*$", lines[j]))
            if fence.group(1) in _SHELL_FENCES:
                pending, start = "", 0
                for n in range(i + 1, end):
                    line = lines[n].strip()
                    if not pending:
                        start = n + 1
                    pending += " " + line.removesuffix("\\")
                    if line.endswith("\\"):
                        continue
                    text = re.sub(r"(^|\s)#.*$", "", pending).strip().removeprefix("$ ")
                    pending = ""
                    if _is_command(text):
                        found.append(DocCommand(f"{rel}:{start}", _squeeze(text)))
            prose.append((end + 1, ""))  # a fence ends a paragraph
            i = end + 1
        # inline code, paragraph by paragraph (a code span does not cross a blank line)
        para: list[tuple[int, str]] = []
        for number, line in [*prose, (len(lines) + 1, "")]:
            if line.strip():
                para.append((number, line))
                continue
            text = "\n".join(line for _, line in para)
            for m in re.finditer(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", text, re.S):
                span = _squeeze(m.group(2))
                if _is_command(span):
                    found.append(
                        DocCommand(f"{rel}:{para[0][0] + text.count(chr(10), 0, m.start())}", span)
                    )
            para = []
    return found


@pytest.fixture(scope="module")
def commands() -> list[DocCommand]:
    found = doc_commands()
    assert len(found) > 30, found  # the extraction itself works
    return found


def _kind(cmd: DocCommand) -> str:
    first = cmd.tokens[0].removeprefix(".venv/bin/")
    if first in ("python", "python3") and re.fullmatch(r"benchmarks/\w+\.py", cmd.tokens[1]):
        return "benchmark"
    if re.fullmatch(r"benchmarks/\w+\.py", first):
        return "benchmark"
    if first == "pip" and any(re.fullmatch(r"(wisefuse-plugins|\.)\[.*\]", w) for w in cmd.tokens):
        return "extras"
    return first if first in ("wisefuse", "make") else "other"


def test_docs_mention_no_command_that_is_not_checked(commands: list[DocCommand]):
    other = {c.text: c.where for c in commands if _kind(c) == "other"}
    unknown = {text: where for text, where in other.items() if text not in NOT_RUN}
    assert not unknown, (
        "commands in the docs that nothing checks: check them here or add them to NOT_RUN "
        f"with the reason: {unknown}"
    )
    stale = sorted(set(NOT_RUN) - set(other))
    assert not stale, f"NOT_RUN lists commands the docs no longer show: {stale}"


# -- wisefuse --------------------------------------------------------------------------------


@functools.cache
def _cli_group() -> Any:
    import typer.main

    from wisefuse_plugins.cli import app

    return typer.main.get_command(app)


def _unbracket(words: list[str]) -> list[str]:
    """``[--json PATH]`` (an optional part, in a synopsis) as ``--json PATH``."""
    out, inside = [], False
    for word in words:
        if word.startswith("[-"):
            word, inside = word[1:], True
        if inside and word.endswith("]"):
            word, inside = word[:-1], False
        out.append(word)
    return out


def _split_wisefuse(tokens: list[str]) -> tuple[list[str], str | None, list[str]]:
    """(root options, subcommand, its arguments), with ``[--opt value]`` unbracketed."""
    args = _unbracket(tokens[1:])
    root = []
    while args and args[0].startswith("-"):
        root.append(args.pop(0))
    sub = args.pop(0) if args else None
    group = _cli_group().commands.get(sub or "")
    if args and getattr(group, "commands", None) and args[0] in group.commands:
        sub = f"{sub} {args.pop(0)}"  # a command of a group: ``wisefuse lambda serve``
    return root, sub, args


def _command(sub: str) -> Any:
    """The Click command ``sub`` names (``"lambda serve"``: one of a group), or None."""
    command: Any = _cli_group()
    for word in sub.split():
        command = getattr(command, "commands", {}).get(word)
    return command


def _options(command: Any) -> dict[str, Any]:
    """Option name -> parameter; ``--help`` (added by Click itself) -> None."""
    names: dict[str, Any] = {"--help": None}
    for p in command.params:
        if p.param_type_name == "option":
            names.update(dict.fromkeys([*p.opts, *p.secondary_opts], p))
    return names


def _check_wisefuse(cmd: DocCommand) -> list[str]:
    """What is wrong with a ``wisefuse ...`` command of the docs (nothing: ``[]``)."""
    group = _cli_group()
    root, sub, args = _split_wisefuse(cmd.tokens)
    problems = [f"no such global option {o}" for o in root if o not in _options(group)]
    if sub is None:
        return problems
    command = _command(sub)
    if command is None:
        return [*problems, f"no such command {sub!r} (commands: {', '.join(group.commands)})"]
    options, positional, i = _options(command), [], 0
    while i < len(args):
        word = args[i]
        if word.startswith("-") and len(word) > 1:
            name = word.split("=", 1)[0]
            param = options.get(name)
            if name not in options:
                problems.append(f"wisefuse {sub} has no option {name}")
            elif param is not None and "=" not in word and not (param.is_flag or param.count):
                i += param.nargs
        else:
            positional.append(word)
        i += 1
    required = [p for p in command.params if p.param_type_name == "argument" and p.required]
    if problems or (not positional and required):
        return problems  # a mention (`wisefuse optimize --plot`): names checked, no arguments
    try:  # the CLI's own parser: arity, types, values
        with contextlib.redirect_stdout(io.StringIO()):
            command.make_context(f"wisefuse {sub}", list(args))
    except Exception as err:  # the parser's usage errors, or --help's exit
        if getattr(err, "exit_code", None) != 0:
            message = err.format_message() if hasattr(err, "format_message") else str(err)
            problems.append(f"wisefuse {sub} refuses {args}: {message}")
    return problems


def test_wisefuse_commands_in_the_docs_exist_with_their_options(commands: list[DocCommand]):
    checked = [c for c in commands if _kind(c) == "wisefuse"]
    assert len(checked) > 15
    problems = {f"{c.where}: {c.text}": p for c in checked if (p := _check_wisefuse(c))}
    assert not problems, problems


def test_the_command_checker_catches_drift():
    def check(text: str) -> list[str]:
        return _check_wisefuse(DocCommand("here", text))

    assert check("wisefuse optimize dag.py --slo 1.5x -o plan.json --plot f.png") == []
    assert check("wisefuse optimize --plot") == []
    assert (
        check("wisefuse deploy a.py plan.json --role R --store s3://b [--no-state-machine]") == []
    )
    assert check("wisefuse optimise dag.py")[0].startswith("no such command 'optimise'")
    assert check("wisefuse optimize dag.py --slo-target 2") == [
        "wisefuse optimize has no option --slo-target"
    ]
    assert check("wisefuse optimize --frontier")
    assert "refuses" in check("wisefuse report dag.py plan.json --runs many")[0]
    assert "refuses" in check("wisefuse report dag.py")[0]  # the plan is missing
    assert "refuses" in check("wisefuse deploy a.py plan.json --store s3://b")[0]  # no --role


def test_help_of_each_documented_command_shows_the_options_the_docs_use(
    commands: list[DocCommand], scene: Scene
):
    used: dict[str, set[str]] = {}
    for c in commands:
        if _kind(c) == "wisefuse":
            _, sub, args = _split_wisefuse(c.tokens)
            if sub is not None:
                used.setdefault(sub, set()).update(
                    w.split("=", 1)[0] for w in args if w.startswith("--")
                )
    assert {"inspect", "profile", "optimize", "report", "deploy", "demo"} <= set(used)
    for sub, options in sorted(used.items()):
        code, out, err = scene.run(*sub.split(), "--help")
        assert code == 0, err
        missing = sorted(o for o in options if o not in out)
        assert not missing, f"`wisefuse {sub} --help` does not show {missing}"


@pytest.mark.airflow  # `wisefuse inspect airflow/video_analytics.py` parses it with DagBag
def test_cheap_documented_commands_run(commands: list[DocCommand], scene: Scene):
    """``wisefuse --version``, ``--help`` and ``inspect`` of the repository's examples, for real."""
    ran = []
    for c in commands:
        if _kind(c) != "wisefuse":
            continue
        root, sub, args = _split_wisefuse(c.tokens)
        runnable = (sub is None and root and set(root) <= {"--help", "--version"}) or (
            sub == "inspect"
            and len([a for a in args if not a.startswith("-")]) == 1
            and (REPO / args[-1].split("::")[0]).is_file()
        )
        if not runnable or c.text in ran:
            continue
        with scene.mp.context() as mp:
            mp.chdir(REPO)
            code, out, err = scene.run(*c.tokens[1:])
        assert code == 0, f"{c.where}: {c.text} exited {code}:\n{err}"
        assert out.strip(), c.text
        ran.append(c.text)
    assert "wisefuse inspect airflow/video_analytics.py" in ran and "wisefuse --help" in ran


# -- make, pip, benchmarks ---------------------------------------------------------------------


def test_make_targets_in_the_docs_exist(commands: list[DocCommand]):
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", makefile, re.M))
    used = {(c.where, t) for c in commands if _kind(c) == "make" for t in c.tokens[1:]}
    assert used, "the docs show no make command"
    assert not {u for u in used if u[1] not in targets}, (used, targets)


def test_extras_in_the_docs_exist(commands: list[DocCommand]):
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    extras = set(pyproject["project"]["optional-dependencies"])
    used = set()
    for c in commands:
        if _kind(c) == "extras":
            for word in c.tokens:
                if m := re.fullmatch(r"(?:wisefuse-plugins|\.)\[(.*)\]", word):
                    used |= {(c.where, e.strip()) for e in m.group(1).split(",")}
    assert {"airflow", "prefect", "aws", "all"} <= {e for _, e in used}
    assert not {u for u in used if u[1] not in extras}, extras


_PARSE_ONLY = r"""
import argparse, contextlib, importlib.util, io, json, sys

class Parsed(Exception):
    pass

real = argparse.ArgumentParser.parse_args

def parse_args(self, args=None, namespace=None):
    real(self, args, namespace)  # exits 2 with the usage error on a bad option or value
    raise Parsed

argparse.ArgumentParser.parse_args = parse_args
sys.path.insert(0, ".")
results = []
for i, (path, argv) in enumerate(json.load(sys.stdin)):
    err = io.StringIO()
    try:
        spec = importlib.util.spec_from_file_location(f"_docs_benchmark_{i}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            spec.loader.exec_module(module)
            module.main(argv)
        results.append("main() returned without parsing its arguments")
    except Parsed:
        results.append(None)
    except SystemExit as done:
        results.append(f"exit {done.code}: {err.getvalue().strip()[-500:]}")
    except Exception as failed:
        results.append(f"{type(failed).__name__}: {failed}")
json.dump(results, sys.stdout)
"""


def test_benchmark_commands_in_the_docs_parse(commands: list[DocCommand]):
    """Each script exists; each command line goes through the script's own argparse parser
    (the script is imported and its ``main(argv)`` stops right after parsing: nothing runs)."""
    runs: dict[tuple[str, tuple[str, ...]], str] = {}
    for c in (c for c in commands if _kind(c) == "benchmark"):
        words = c.tokens
        if words[0].removeprefix(".venv/bin/") in ("python", "python3"):
            words = words[1:]
        script, argv = words[0], _unbracket(words[1:])
        assert (REPO / script).is_file(), f"{c.where}: {script} does not exist"
        if argv or c.tokens[0].endswith(("python", "python3")):  # a run, not a mention
            runs.setdefault((script, tuple(argv)), c.where)
    assert len(runs) >= 6, runs
    drift = [
        ["benchmarks/scale.py", ["--seeds", "3"]],
        ["benchmarks/scale.py", ["--no-such-option"]],
    ]
    proc = subprocess.run(
        [sys.executable, "-c", _PARSE_ONLY],
        input=json.dumps([*drift, *([str(REPO / s), list(a)] for s, a in runs)]),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ok, refused, *results = json.loads(proc.stdout)
    assert ok is None and "unrecognized arguments: --no-such-option" in refused  # the check works
    problems = {
        f"{where}: {script} {' '.join(argv)}": result
        for ((script, argv), where), result in zip(runs.items(), results, strict=True)
        if result is not None
    }
    assert not problems, problems
