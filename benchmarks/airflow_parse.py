"""Benchmark: what parsing a DAG file costs, plain vs drop-in ``rewrite`` vs emitted file.

Airflow parses every DAG file again and again: the dag-processor every
``min_file_process_interval`` (30 s) in a process forked for that file, and every task
instance in its own process at start-up. Whatever a DAG file imports or computes is paid
each time, against ``dagbag_import_timeout`` (30 s by default). For every example DAG
(``airflow/*.py``) and every corpus DAG (``tests/airflow_corpus/dags/*.py``, when present)
this script writes three files into a temporary folder:

- **plain**: the DAG file as it is (a final bare ``my_dag()`` becomes ``dag = my_dag()``);
- **drop-in**: the same file ending with ``dag = rewrite(dag, PLAN)``;
- **emitted**: the file ``emit_dag`` writes for the same plan;

with the plan ``chains_plan(workflow, bundle_size=2)`` (every one-to-one chain fused,
mapped chains bundled by two) and its IR beside them. Then one measuring process imports
what the dag-processor has imported (``airflow.dag_processing.manager`` and ``.processor``)
and, like the dag-processor, forks one child per parse: the parent pre-imports the
``airflow.*`` modules the file names (``parsing_pre_import_modules``) and freezes the
garbage collector (``gc.freeze()``, as ``DagFileProcessorManager`` does before it forks;
``--spawn`` starts a new interpreter per parse instead), and the child times

- **first**: the file's first parse in that fresh process (``DagBag(dag_folder=FILE)``:
  importing everything the file imports, building the DAG, and for the drop-in the rewrite);
- **steady**: the same file parsed again in that process (every module already imported:
  what is left is the file's own work), the median of ``--steady`` parses;

and serialising its DAGs as the dag-processor does (``DagSerialization.to_dict``). Every
(file, form) is forked ``--repeats`` times after one warm-up fork (which also writes the
bytecode of every module imported into a private ``PYTHONPYCACHEPREFIX``, as an installed
package has its ``.pyc`` files; ``--no-bytecode`` measures without it; and, for the
drop-in, prepares its layout as the first parse of a (plan, DAG) pair does: see
:mod:`wisefuse_plugins.providers.airflow.prepared`); figures are medians,
the forms taking turns round by round so that the host's load falls on all of them alike.
Wall time and the child's CPU time are both reported; on a shared host the CPU time is the
steadier figure. Each drop-in is checked to have really been rewritten (its unit tasks are
WiseFuse operators); a drop-in that fell back to its original DAG is reported, not timed
as a success. One more form, **drop-in, no record**, parses the drop-in file with
``WISEFUSE_LAYOUT_CACHE=0``: what the first parse after a new plan or a DAG change pays
(the adapter, the plan and spec models, the layout), and every parse with records off.

    .venv/bin/python benchmarks/airflow_parse.py [--repeats 5] [--steady 5] [--json out.json]
    .venv/bin/python benchmarks/airflow_parse.py --dags video_analytics,assets --repeats 3
    .venv/bin/python benchmarks/airflow_parse.py --spawn --no-bytecode --dags approx_svd

Goal (issue 19): the drop-in's and the emitted file's parse cost at most the plain parse
+ 50 ms, first parse and steady state (CPU time, worst DAG).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python benchmarks/airflow_parse.py` from anywhere
    sys.path.insert(0, str(REPO))

SOURCES = (REPO / "airflow", REPO / "tests" / "airflow_corpus" / "dags")
FORMS = ("plain", "drop-in", "emitted", "no-record")
#: Environment of a form's parse (besides the measuring process's own).
FORM_ENV = {"no-record": {"WISEFUSE_LAYOUT_CACHE": "0"}}
#: The file a form parses (the no-record form parses the drop-in file).
FORM_FILE = {"no-record": "drop-in"}
GOAL_MS = 50.0
#: Third-party packages too heavy for a parse; listed in the report when a parse imports
#: one the plain DAG does not.
HEAVY = (
    "networkx",
    "numpy",
    "scipy",
    "pandas",
    "matplotlib",
    "sqlalchemy",
    "boto3",
    "botocore",
    "prefect",
    "rich",
    "typer",
)

DROP_IN = """

# --- the drop-in line (added by benchmarks/airflow_parse.py) ---------------------------
from pathlib import Path as _Path  # noqa: E402

from wisefuse_plugins.airflow import rewrite as _rewrite  # noqa: E402

dag = _rewrite(dag, _Path(__file__).resolve().parent / {plan!r})
"""


# --------------------------------------------------------------------------- the files


def with_dag_variable(source: str) -> str | None:
    """``source`` with its DAG in a module variable ``dag`` (None when it has none)."""
    source = re.sub(r"^(\w+)\(\)\s*\Z", r"dag = \1()\n", source, flags=re.M)
    if re.search(r"^dag\s*=|\bas dag\s*:", source, flags=re.M):
        return source
    return None


def discover(names: set[str] | None) -> list[tuple[str, Path]]:
    """(name, file) of every example and corpus DAG file, corpus names prefixed ``corpus/``."""
    found = []
    for folder in SOURCES:
        if not folder.is_dir():
            continue
        prefix = "" if folder.name == "airflow" else "corpus/"
        for path in sorted(folder.glob("*.py")):
            if names is None or path.stem in names or f"{prefix}{path.stem}" in names:
                found.append((f"{prefix}{path.stem}", path))
    return found


def build(name: str, path: Path, root: Path) -> dict[str, Any]:
    """The three files of one DAG under ``root/<stem>/``; what was built, or why not."""
    from tests.plans import chains_plan
    from wisefuse_plugins.adapters.airflow import from_dag, load_dag_file
    from wisefuse_plugins.emitters.airflow import emit_dag
    from wisefuse_plugins.errors import WiseFuseError
    from wisefuse_plugins.ir import dump
    from wisefuse_plugins.plan.schema import dump_plan

    stem = path.stem
    source = with_dag_variable(path.read_text())
    entry: dict[str, Any] = {"name": name, "source": str(path.relative_to(REPO))}
    if source is None:
        entry["skipped"] = "no module variable holds its DAG (nothing to pass to rewrite)"
        return entry
    folder = root / stem
    folder.mkdir(parents=True)
    plain = folder / f"{stem}.py"
    plain.write_text(source)
    try:
        original = load_dag_file(plain)
        workflow = from_dag(original)
        plan = chains_plan(workflow, bundle_size=2)
    except WiseFuseError as err:
        entry["skipped"] = f"cannot plan it: {err.message}"
        return entry
    dump(workflow, folder / f"{stem}.ir.json")
    dump_plan(plan, folder / f"{stem}.plan.json")
    (folder / f"dropin_{stem}.py").write_text(source + DROP_IN.format(plan=f"{stem}.plan.json"))
    emitted = emit_dag(
        workflow,
        plan,
        dag=original,
        dag_id=f"{original.dag_id}__emitted",
        plan_file=f"{stem}.plan.json",
        workflow_file=f"{stem}.ir.json",
    )
    (folder / f"emitted_{stem}.py").write_text(emitted)
    entry.update(
        dag_id=original.dag_id,
        tasks=len(original.task_dict),
        python_stages=len(workflow.python_stages),
        units=len(plan.units),
        files={
            "plain": str(plain),
            "drop-in": str(folder / f"dropin_{stem}.py"),
            "emitted": str(folder / f"emitted_{stem}.py"),
        },
    )
    return entry


# --------------------------------------------------------------------------- measuring


def _child(file: str, steady: int, out: int, env: dict[str, str] | None = None) -> None:
    """In the forked child: parse ``file`` (first, then ``steady`` times again); report."""
    os.environ.update(env or {})
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    before = set(sys.modules)
    w0, c0 = time.perf_counter(), time.process_time()
    bag = DagBag(dag_folder=file, load_op_links=False)
    first = (time.perf_counter() - w0, time.process_time() - c0)
    w0 = time.perf_counter()
    for dag in bag.dags.values():
        DagSerialization.to_dict(dag)
    serialize = time.perf_counter() - w0
    modules = sorted({m.split(".")[0] for m in set(sys.modules) - before})
    tasks = {
        dag_id: sorted({type(t).__name__ for t in dag.tasks}) for dag_id, dag in bag.dags.items()
    }
    again = []
    for _ in range(steady):
        w0, c0 = time.perf_counter(), time.process_time()
        DagBag(dag_folder=file, load_op_links=False)
        again.append((time.perf_counter() - w0, time.process_time() - c0))
    result = {
        "first_wall": first[0],
        "first_cpu": first[1],
        "steady_wall": statistics.median(w for w, _ in again) if again else None,
        "steady_cpu": statistics.median(c for _, c in again) if again else None,
        "serialize": serialize,
        "dags": sorted(bag.dags),
        "import_errors": {k: v[-300:] for k, v in bag.import_errors.items()},
        "operators": tasks,
        "modules": modules,
    }
    os.write(out, json.dumps(result).encode())


def _as_the_dag_processor(file: str) -> None:
    """Import what the dag-processor has when it forks a parser for ``file``: its manager
    and processor modules, and the ``airflow.*`` modules the file names (it pre-imports
    them); then freeze the garbage collector, as its manager does before forking."""
    import logging

    import airflow.dag_processing.manager
    import airflow.dag_processing.processor  # noqa: F401
    from airflow.utils.file import iter_airflow_imports

    logging.disable(logging.INFO)  # the DagBag's "Filling up" lines, per parse
    for module in iter_airflow_imports(file):
        with contextlib.suppress(Exception):  # the child reports what fails
            __import__(module)
    gc.freeze()


def spawned_main(file: str, steady: int, out: str, env: str = "{}") -> None:
    """``--spawn``: one parse in this new interpreter (no fork), reported into ``out``."""
    _as_the_dag_processor(file)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        _child(file, steady, fd, json.loads(env))
    finally:
        os.close(fd)


def measure_main(spec_path: str) -> None:
    """The measuring process: Airflow's parser imported once, a forked child per parse
    (``--spawn``: a new interpreter per parse instead)."""
    spec = json.loads(Path(spec_path).read_text())
    results: dict[str, list[dict[str, Any]]] = {}
    for rnd in range(spec["repeats"] + 1):
        for job in spec["jobs"]:
            if spec.get("spawn"):
                got = _spawned(
                    job["file"], spec["steady"], Path(spec["out"]).parent, job.get("env", {})
                )
                if rnd > 0:
                    results.setdefault(job["key"], []).append(got)
                continue
            _as_the_dag_processor(job["file"])
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child
                os.close(r)
                try:
                    _child(job["file"], spec["steady"], w, job.get("env"))
                finally:
                    os._exit(0)
            os.close(w)
            with os.fdopen(r, "rb") as pipe:
                data = pipe.read()
            os.waitpid(pid, 0)
            got = json.loads(data) if data else {"error": "the child reported nothing"}
            if rnd > 0:  # round 0 warms the bytecode cache
                results.setdefault(job["key"], []).append(got)
    Path(spec["out"]).write_text(json.dumps(results))


def _spawned(file: str, steady: int, tmp: Path, env: dict[str, str]) -> dict[str, Any]:
    out = tmp / "spawned.json"
    out.unlink(missing_ok=True)
    subprocess.run(
        [sys.executable, __file__, "--_spawned", file, str(steady), str(out), json.dumps(env)],
        stdout=subprocess.DEVNULL,
        check=False,
    )
    return json.loads(out.read_text()) if out.exists() else {"error": "no report"}


def run_measurements(
    jobs: list[dict[str, str]],
    tmp: Path,
    *,
    repeats: int,
    steady: int,
    bytecode: bool,
    spawn: bool = False,
) -> dict[str, list[dict[str, Any]]]:
    spec = {
        "jobs": jobs,
        "repeats": repeats,
        "steady": steady,
        "spawn": spawn,
        "out": str(tmp / "results.json"),
    }
    (tmp / "spec.json").write_text(json.dumps(spec))
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp / "airflow-home"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(tmp / "dags"),
        "WISEFUSE_HOME": str(tmp / "wisefuse-home"),
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        ),
    }
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    log = tmp / "measure.log"
    with open(log, "w") as f:
        done = subprocess.run(
            [sys.executable, __file__, "--_measure", str(tmp / "spec.json")],
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
            cwd=tmp,
        )
    if done.returncode != 0:
        raise SystemExit(f"the measuring process failed:\n{log.read_text()[-3000:]}")
    return json.loads((tmp / "results.json").read_text())


# --------------------------------------------------------------------------- figures


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) * 1000 if values else None


def summarize(entry: dict[str, Any], runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians per form (ms), what the drop-in became, and what each form imported."""
    forms: dict[str, Any] = {}
    for form in FORMS:
        got = runs.get(f"{entry['name']}|{form}", [])
        errors = sorted({e for r in got for e in r.get("import_errors", {}).values()})
        forms[form] = {
            "first_wall_ms": _median(got, "first_wall"),
            "first_cpu_ms": _median(got, "first_cpu"),
            "steady_wall_ms": _median(got, "steady_wall"),
            "steady_cpu_ms": _median(got, "steady_cpu"),
            "serialize_ms": _median(got, "serialize"),
            "runs": len(got),
            "samples": {
                k: [r.get(k) for r in got]
                for k in ("first_wall", "first_cpu", "steady_wall", "steady_cpu")
            },
            "import_errors": errors,
            "operators": got[0].get("operators") if got else None,
            "modules": got[0].get("modules", []) if got else [],
        }
    operators = forms["drop-in"]["operators"] or {}
    kinds = {k for names in operators.values() for k in names}
    entry["rewritten"] = entry["units"] == 0 or any(k.startswith("WiseFuse") for k in kinds)
    plain_modules = set(forms["plain"]["modules"])
    for form in FORMS[1:]:
        extra = sorted(set(forms[form]["modules"]) - plain_modules)
        forms[form]["extra_modules"] = extra
        forms[form]["heavy_modules"] = [m for m in extra if m in HEAVY]
    entry["forms"] = forms
    return entry


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def _delta(value: float | None, base: float | None) -> str:
    if value is None or base is None:
        return "-"
    d = value - base
    return f"{d:+.0f}" if abs(d) >= 100 else f"{d:+.1f}"


def table(entries: list[dict[str, Any]], clock: str) -> str:
    """One row per DAG: plain, then the other forms as differences from plain."""
    from benchmarks._common import fmt_table

    rows = []
    for e in entries:
        f = e["forms"]
        p1, p2 = f["plain"][f"first_{clock}_ms"], f["plain"][f"steady_{clock}_ms"]
        note = "" if e["rewritten"] else " (NOT rewritten)"
        if f["drop-in"]["import_errors"] or f["plain"]["import_errors"]:
            note += " (import errors)"
        rows.append(
            [e["name"] + note, f"{e['tasks']}/{e['units']}", _ms(p1)]
            + [_delta(f[form][f"first_{clock}_ms"], p1) for form in FORMS[1:]]
            + [_ms(p2)]
            + [_delta(f[form][f"steady_{clock}_ms"], p2) for form in FORMS[1:]]
        )
    others = ["drop-in", "emitted", "no record"]
    headers = ["DAG", "tasks/units", "first plain", *others, "steady plain", *others]
    return fmt_table(headers, rows)


def overheads(entries: list[dict[str, Any]], form: str, key: str) -> list[float]:
    out = []
    for e in entries:
        a, b = e["forms"][form][key], e["forms"]["plain"][key]
        if a is not None and b is not None and e["rewritten"]:
            out.append(a - b)
    return out


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="forked parses per file and form")
    ap.add_argument("--steady", type=int, default=5, help="re-parses per fork (steady state)")
    ap.add_argument("--dags", default=None, help="comma-separated names (default: all)")
    ap.add_argument("--no-bytecode", action="store_true", help="measure without cached .pyc files")
    ap.add_argument("--json", default=None, help="write the figures there")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument(
        "--spawn",
        action="store_true",
        help="a new interpreter per parse instead of a fork (slower: ~2 s of imports each)",
    )
    ap.add_argument("--_measure", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_spawned", nargs=4, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._measure:  # the measuring process imports nothing of ours before a parse
        measure_main(args._measure)
        return 0
    if args._spawned:
        spawned_main(args._spawned[0], int(args._spawned[1]), args._spawned[2], args._spawned[3])
        return 0
    from benchmarks._common import host_line, write_json

    names = {n.strip() for n in args.dags.split(",")} if args.dags else None
    found = discover(names)
    if not found:
        raise SystemExit(f"no DAG files found in {[str(s) for s in SOURCES]} for {args.dags!r}")
    t_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="wisefuse-parse-"))
    saved = dict(os.environ)
    try:
        os.environ.update(
            AIRFLOW_HOME=str(tmp / "airflow-home"),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            WISEFUSE_HOME=str(tmp / "wisefuse-home"),
        )
        print(host_line(), flush=True)
        print(
            f"building plain / drop-in / emitted files of {len(found)} DAG files in {tmp}",
            flush=True,
        )
        entries = [build(name, path, tmp / "dags") for name, path in found]
        for e in entries:
            if "skipped" in e:
                print(f"  skipped {e['name']}: {e['skipped']}")
        measured = [e for e in entries if "skipped" not in e]
        skipped = [e for e in entries if "skipped" in e]
        jobs = [
            {
                "key": f"{e['name']}|{form}",
                "file": e["files"][FORM_FILE.get(form, form)],
                "env": FORM_ENV.get(form, {}),
            }
            for e in measured
            for form in FORMS
        ]
        bytecode = not args.no_bytecode
        print(
            f"measuring {len(jobs)} files: {args.repeats} "
            f"{'parses in new interpreters' if args.spawn else 'forked parses'} each (+1 warm-up), "
            f"{args.steady} re-parses per fork; "
            f"bytecode {'cached (private PYTHONPYCACHEPREFIX)' if bytecode else 'not cached'}",
            flush=True,
        )
        runs = run_measurements(
            jobs,
            tmp,
            repeats=args.repeats,
            steady=args.steady,
            bytecode=bytecode,
            spawn=args.spawn,
        )
    finally:
        os.environ.clear()
        os.environ.update(saved)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    entries = [summarize(e, runs) for e in measured]

    for clock, what in (("wall", "wall time"), ("cpu", "CPU time of the parsing process")):
        print(
            f"\nparse time, {what}, ms (median): plain, then drop-in, emitted and drop-in "
            "without a record as differences from plain"
        )
        print(table(entries, clock))
    print()
    for e in entries:
        for form in ("drop-in", "emitted"):
            f = e["forms"][form]
            if f["heavy_modules"]:
                print(
                    f"  {e['name']} {form} imports what the plain DAG does not: {f['heavy_modules']}"
                )
            for err in f["import_errors"]:
                print(f"  {e['name']} {form} import error: ...{err[-200:]}")
        if not e["rewritten"]:
            print(f"  {e['name']}: the drop-in fell back to its original DAG (see its log)")
    summaries: dict[str, dict[str, Any]] = {}
    for form in FORMS[1:]:
        summaries[form] = {}
        for key in ("first_wall_ms", "first_cpu_ms", "steady_wall_ms", "steady_cpu_ms"):
            d = overheads(entries, form, key)
            if d:
                summaries[form][key] = {"median": statistics.median(d), "max": max(d)}
    summary = summaries["drop-in"]
    rewritten = sum(e["rewritten"] for e in entries)
    titles = {
        "drop-in": "drop-in over plain (its prepared layout read back: every parse but the first)",
        "emitted": "emitted file over plain",
        "no-record": "drop-in over plain without a record (the first parse of a new plan or DAG)",
    }
    print(f"{rewritten} of {len(entries)} DAGs rewritten")
    for form, found in summaries.items():
        print(f"{titles[form]}:")
        for key, st in found.items():
            print(f"  {key:15s} median {st['median']:+.1f} ms, worst {st['max']:+.1f} ms")
    worst = {
        form: max(
            (
                summaries[form].get(k, {}).get("max", float("inf"))
                for k in ("first_cpu_ms", "steady_cpu_ms")
            ),
        )
        for form in ("drop-in", "emitted")
    }
    met = all(w <= GOAL_MS for w in worst.values()) and rewritten == len(entries)
    print(
        f"goal (drop-in and emitted first and steady parse <= plain + {GOAL_MS:.0f} ms, CPU, "
        f"every DAG; worst drop-in {worst['drop-in']:+.1f}, emitted {worst['emitted']:+.1f}): "
        f"{'met' if met else 'NOT met'}"
    )
    print(f"took {time.perf_counter() - t_start:.0f} s")
    write_json(
        args.json,
        {
            "host": host_line(),
            "repeats": args.repeats,
            "steady": args.steady,
            "bytecode": bytecode,
            "spawn": args.spawn,
            "goal_ms": GOAL_MS,
            "goal_met": met,
            "summary": summary,
            "summaries": summaries,
            "dags": entries,
            "skipped": skipped,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
