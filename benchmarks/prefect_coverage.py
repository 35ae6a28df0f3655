"""How much of real Prefect flows the Prefect adapter turns into runnable Python stages.

Traces every flow found in the ``*.py`` files of the given folders whose parameters all
have defaults (the trace runs the flow once, for real, with those defaults) and prints,
per flow and in all: stages (task calls), the share of Python stages, the opaque stages
by reason (names and numbers folded, so that alike reasons group), and crashes (files
that do not import, traces that raise or hang). Flows with required parameters, async
flows and flows defined in no file are counted and skipped.

    .venv/bin/python benchmarks/prefect_coverage.py [FOLDER...] [--json PATH] [--timeout S]

Default folders: the repository's ``prefect/``, and example flow files shipped with the
installed Prefect, if any (Prefect 3.7.7 ships none: its examples live in docstrings).
``--json`` writes ``{"files", "flows", "tasks", "python_share", "opaque_reasons",
"crashes"}``. Flows run against a temporary Prefect home and server (nothing touches
``~/.prefect``) in a child process, one flow at a time: a flow that hangs longer than
``--timeout`` seconds is killed and counted as a crash, and the rest go on.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SKIP_PARTS = {"__pycache__", "site-packages", ".venv", "node_modules"}


# =========================================================================== discovery


def default_folders() -> list[Path]:
    """``prefect/`` of this repository, and any example folder the Prefect package ships."""
    folders = [REPO / "prefect"]
    spec = importlib.util.find_spec("prefect")
    if spec is not None and spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations)))
        folders += [p for p in (root / "examples", root.parent / "prefect_examples") if p.is_dir()]
    return folders


def flow_files(folders: list[Path]) -> list[Path]:
    files = []
    for folder in folders:
        if folder.is_file():
            files.append(folder.resolve())
            continue
        for path in sorted(folder.rglob("*.py")):
            if SKIP_PARTS & set(path.parts) or path.name.startswith("."):
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            if re.search(r"^\s*(from|import)\s+prefect\b", text, re.M) and "flow" in text:
                files.append(path.resolve())
    return files


def fold(reason: str) -> str:
    """An opaque reason without its specifics, so that alike reasons count together."""
    reason = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", reason)
    reason = re.sub(r"(/[^\s,;:]+)+", "<path>", reason)
    reason = re.sub(r"#?\d+", "N", reason)
    return reason.split("; ")[0].strip()


# =========================================================================== the child


def child(files: list[str], skip: int) -> None:
    """Trace the flows of ``files`` (after the first ``skip``), one JSON line per flow."""
    from prefect.flows import Flow

    from wisefuse_plugins.adapters.prefect import trace_flow

    done = 0
    for file in files:
        path = Path(file)
        try:
            module = _import(path)
        except BaseException as err:  # the file's own code failed: a crash, not ours
            if done >= skip:
                _emit({"file": file, "flow": None, "status": "crash", "why": _why(err)})
            done += 1
            continue
        flows = [v for v in vars(module).values() if isinstance(v, Flow)]
        own = [f for f in flows if getattr(f.fn, "__module__", None) == module.__name__]
        for flow in list({id(f): f for f in (own or flows)}.values()):
            if done < skip:
                done += 1
                continue
            done += 1
            _emit({"file": file, "flow": flow.name, "status": "start"})
            record: dict[str, Any] = {"file": file, "flow": flow.name}
            missing = _required(flow)
            if flow.isasync:
                record.update(status="skipped", why="async flow")
            elif missing:
                record.update(status="skipped", why=f"parameters without defaults: {missing}")
            else:
                try:
                    wf = trace_flow(flow)
                    record.update(
                        status="traced",
                        stages=len(wf.stages),
                        python=len(wf.python_stages),
                        opaque=[s.opaque_reason or "" for s in wf.stages if not s.is_python],
                    )
                except BaseException as err:
                    record.update(status="crash", why=_why(err))
            _emit(record)
        if not flows and done >= skip:
            _emit({"file": file, "flow": None, "status": "no-flow"})


def _import(path: Path) -> Any:
    name = f"coverage_{abs(hash(str(path)))}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _required(flow: Any) -> list[str]:
    import inspect

    params = inspect.signature(flow.fn).parameters.values()
    return [
        p.name
        for p in params
        if p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]


def _why(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:200]


def _emit(record: dict[str, Any]) -> None:
    sys.stdout.write("@@" + json.dumps(record) + "\n")
    sys.stdout.flush()


# =========================================================================== the parent


def run(files: list[Path], timeout_s: float) -> list[dict[str, Any]]:
    """Trace in a child process; restart it after a flow that hung or killed it."""
    results: list[dict[str, Any]] = []
    skip = 0
    with tempfile.TemporaryDirectory(prefix="prefect-coverage-") as home:
        env = {
            **os.environ,
            "PREFECT_HOME": home,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_MEMO_STORE_PATH": str(Path(home) / "memo_store.toml"),
            "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(Path(home) / "storage"),
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
        for name in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE"):
            env.pop(name, None)
        while True:
            proc = subprocess.Popen(
                [sys.executable, __file__, "--child", str(skip), *map(str, files)],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                env=env,
                cwd=str(REPO),
            )
            current, finished = _follow(proc, timeout_s, results)
            if finished:
                return results
            # the child hung or died in the middle of a flow: count it, go on after it
            results.append({**current, "status": "crash", "why": "hung or killed the process"})
            skip = sum(1 for r in results if r["status"] != "no-flow")


def _follow(
    proc: subprocess.Popen, timeout_s: float, results: list[dict[str, Any]]
) -> tuple[dict[str, Any], bool]:
    """Read the child's records; kill it when one flow takes longer than ``timeout_s``."""
    import selectors

    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    current: dict[str, Any] = {"file": "?", "flow": None}
    started = time.monotonic()
    # the first flow also waits for the temporary server to start
    limit = timeout_s + 180
    while True:
        if not sel.select(timeout=max(0.1, limit - (time.monotonic() - started))):
            if time.monotonic() - started > limit:
                proc.kill()
                proc.wait()
                return current, False
            continue
        line = proc.stdout.readline()
        if not line:
            proc.wait()
            in_flight = current.get("status") == "start"
            return current, not in_flight
        if not line.startswith("@@"):
            continue
        record = json.loads(line[2:])
        if record["status"] == "start":
            current, started, limit = record, time.monotonic(), timeout_s
            _progress(record)
            continue
        results.append(record)
        current = {}


def _progress(record: dict[str, Any]) -> None:
    print(f"  tracing {record['flow']!r} in {_short(record['file'])} ...", file=sys.stderr)


def _short(file: str) -> str:
    try:
        return str(Path(file).relative_to(REPO))
    except ValueError:
        return file


def summarise(files: list[Path], results: list[dict[str, Any]]) -> dict[str, Any]:
    traced = [r for r in results if r["status"] == "traced"]
    stages = sum(r["stages"] for r in traced)
    python = sum(r["python"] for r in traced)
    reasons = Counter(fold(why) for r in traced for why in r["opaque"])
    return {
        "files": len(files),
        "flows": sum(1 for r in results if r.get("flow") is not None),
        "tasks": stages,
        "python_share": round(python / stages, 4) if stages else 0.0,
        "opaque_reasons": dict(reasons.most_common()),
        "crashes": sum(1 for r in results if r["status"] == "crash"),
    }


def report(results: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    print(f"{'file':<42} {'flow':<28} {'status':<8} {'stages':>6} {'python':>6}")
    for r in results:
        stages = str(r.get("stages", "")) if r["status"] == "traced" else ""
        python = str(r.get("python", "")) if r["status"] == "traced" else ""
        print(
            f"{_short(r['file'])[-42:]:<42} {str(r.get('flow') or '-')[:28]:<28} "
            f"{r['status']:<8} {stages:>6} {python:>6}"
        )
        if r.get("why"):
            print(f"{'':<42}   {r['why']}")
    skipped = sum(1 for r in results if r["status"] == "skipped")
    traced = sum(1 for r in results if r["status"] == "traced")
    print()
    print(
        f"files {summary['files']}, flows {summary['flows']} (traced {traced}, "
        f"skipped {skipped}, crashes {summary['crashes']}), tasks {summary['tasks']}, "
        f"python {summary['python_share']:.1%}"
    )
    for reason, n in summary["opaque_reasons"].items():
        share = n / summary["tasks"] if summary["tasks"] else 0.0
        print(f"  opaque {share:6.1%} ({n}): {reason}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child(argv[2:], int(argv[1]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="*", type=Path, help="folders of flow files")
    parser.add_argument("--json", type=Path, help="write the summary figures here")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per flow")
    args = parser.parse_args(argv)
    folders = args.folders or default_folders()
    for folder in folders:
        if not folder.exists():
            parser.error(f"{folder} does not exist")
    files = flow_files(folders)
    print(
        f"{len(files)} flow files in {', '.join(map(_short, map(str, folders)))}", file=sys.stderr
    )
    results = run(files, args.timeout) if files else []
    summary = summarise(files, results)
    report(results, summary)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
