"""Benchmark of the local Lambda backend: CPU share by memory size, in both clock modes.

Runs, on real worker processes, a CPU-bound function (a pure-Python loop, one thread) and
a sleep-bound function (``time.sleep``) at 256, 512, 1024, 1769 and 3538 MB, in the
"cgroup" clock (real CFS quota, wall time) and the "cpu-clock" clock (unthrottled run,
converted), and prints the Lambda-equivalent durations next to what Lambda's
memory/1769 vCPU rule predicts. Then it measures the backend's own overhead: the
caller-side latency of a warm invocation of a no-op handler (median of 50), and a cold
start. The benchmarked functions are defined in this file, which the workers import.
Last, cold starts with and without ``preload`` (the fork server): INIT of a handler whose
module imports a heavy framework (``airflow.sdk`` by default; ``--cold-modules
airflow.sdk,prefect``), and of this light module, spawned vs forked. And the cold start of
a unit importing a DAG or flow file (fresh interpreters): the unit's own imports alone
(the handler and the app code the file imports), the file under the framework shim (no
Airflow or Prefect imported, as on Lambda), and the file with the real framework. And the
invoke overhead through the local Lambda service's API (boto3's Lambda client with
``endpoint_url``), warm, against the same engine called in-process (goal: < 5 ms).

    .venv/bin/python benchmarks/local_backend.py [--json out.json] [--reps 5]
    .venv/bin/python benchmarks/local_backend.py --cold-only [--cold-modules airflow.sdk,prefect]
    .venv/bin/python benchmarks/local_backend.py --shim-only [--shim-reps 7]
    .venv/bin/python benchmarks/local_backend.py --api-only [--api-reps 50]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

SIZES = [256, 512, 1024, 1769, 3538]
CPU_LOOP = 3_000_000  # ~70 ms of one core here at full speed
SLEEP_S = 0.2


# --- the functions under test (imported by the workers: keep this module light) -------


def cpu_bound(event: dict[str, Any], context: Any) -> int:
    x = 0
    for i in range(event.get("n", CPU_LOOP)):
        x += i
    return x


def sleep_bound(event: dict[str, Any], context: Any) -> str:
    time.sleep(event.get("s", SLEEP_S))
    return "ok"


def noop(event: dict[str, Any], context: Any) -> None:
    return None


# --- the benchmark --------------------------------------------------------------------


def stage_noop(x: int = 0) -> int:
    """A stage that does nothing: what is left of an invocation is the runtime's own work."""
    return x


def _runtime_overhead(reps: int) -> dict[str, float]:
    """Our unit handler's own time per warm invocation (event parsing, spec, store write).

    A one-stage unit whose function is :func:`stage_noop`: the handler reports its total
    (``handler_ms``) and the function's time (``fn_ms``); the difference is the runtime's.
    """
    import tempfile

    from wisefuse_plugins.ir import Const, Stage, Workflow, callable_ref
    from wisefuse_plugins.plan.schema import single_stage_plan
    from wisefuse_plugins.runtime import store as st
    from wisefuse_plugins.runtime.backends.local import LocalLambda
    from wisefuse_plugins.runtime.backends.units import LocalUnits
    from wisefuse_plugins.runtime.executor import execute

    here = Path(__file__).resolve().parent
    stage = Stage(
        id="noop", callable=callable_ref(stage_noop, here), bindings={"x": Const(value=1)}
    )
    wf = Workflow(name="overhead", stages=[stage])
    own, durations = [], []
    with tempfile.TemporaryDirectory() as tmp, LocalLambda() as lam:
        store = st.LocalStore(Path(tmp) / "store")
        units = LocalUnits(lam, store.url, here, timeout_s=30)
        for i in range(reps + 1):
            call = execute(wf, single_stage_plan(wf), units, store, workdir=Path(tmp) / "u").calls[
                0
            ]
            if i:  # the first is the cold start
                payload = call.invoked.payload
                own.append(payload["handler_ms"] - sum(t["fn_ms"] for t in payload["timings"]))
                durations.append(call.invoked.duration_ms)
    return {
        "runtime_handler_ms": statistics.median(own),
        "invocation_ms": statistics.median(durations),
    }


API_GOAL_MS = 5.0
NOOP_APP = "def handle(event, context):\n    return None\n"


def _lambda_client(url: str) -> Any:
    """boto3's Lambda client for the service, as the hook and the block make it."""
    from wisefuse_plugins.runtime.backends.service.client import lambda_client

    return lambda_client(url)


def _api_overhead(reps: int) -> dict[str, Any]:
    """Warm invoke latency through the local Lambda service's API against in-process calls.

    A no-op function (1769 MB) on one service, ``reps`` warm calls each, the ways taking
    turns: ``LocalLambda.invoke()`` on the service's own engine (in-process), a raw HTTP
    POST to ``/invocations`` (keep-alive ``http.client``: the service's HTTP side), boto3's
    ``invoke`` and ``invoke(LogType="Tail")`` (what the AWS backend sends). Then a one-stage
    no-op wisefuse unit, per warm call as the executor times it: ``LocalUnits`` on an
    in-process ``LocalLambda`` against ``AwsLambdaBackend`` pointed at the service (what
    the Airflow hook and the Prefect block use).
    """
    import http.client
    import io
    import tempfile
    import zipfile
    from urllib.parse import urlsplit

    from wisefuse_plugins.ir import Const, Stage, Workflow, callable_ref
    from wisefuse_plugins.plan.schema import single_stage_plan
    from wisefuse_plugins.runtime import store as st
    from wisefuse_plugins.runtime.backends.aws import AwsLambdaBackend
    from wisefuse_plugins.runtime.backends.local import LocalLambda
    from wisefuse_plugins.runtime.backends.service import serve
    from wisefuse_plugins.runtime.backends.units import LocalUnits
    from wisefuse_plugins.runtime.executor import execute

    def ms(t0: float) -> float:
        return (time.perf_counter() - t0) * 1000

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", NOOP_APP)
    here = Path(__file__).resolve().parent
    with (
        tempfile.TemporaryDirectory(prefix="wisefuse-bench-api-") as tmp,
        serve(port=0, root=Path(tmp) / "svc") as handle,
    ):
        lam = _lambda_client(handle.url)
        lam.create_function(
            FunctionName="noop",
            Runtime="python3.11",
            Role="arn:aws:iam::000000000000:role/x",
            Handler="app.handle",
            Code={"ZipFile": buf.getvalue()},
            MemorySize=1769,
            Timeout=30,
        )
        engine_name, _, inv = handle.service.invoke("noop", None, b"{}", "RequestResponse")
        assert inv.ok and inv.cold, inv.error
        engine = handle.service.engine
        split = urlsplit(handle.url)
        conn = http.client.HTTPConnection(split.hostname or "127.0.0.1", split.port)
        path = "/2015-03-31/functions/noop/invocations"

        def raw() -> None:
            conn.request("POST", path, body=b"{}")
            conn.getresponse().read()

        ways = {
            "in_process": lambda: engine.invoke(engine_name, {}),
            "raw_http": raw,
            "boto3": lambda: lam.invoke(FunctionName="noop", Payload=b"{}")["Payload"].read(),
            "boto3_tail": lambda: lam.invoke(FunctionName="noop", Payload=b"{}", LogType="Tail")[
                "Payload"
            ].read(),
        }
        times: dict[str, list[float]] = {way: [] for way in ways}
        for _ in range(reps):
            for way, call in ways.items():
                t0 = time.perf_counter()
                call()
                times[way].append(ms(t0))
        conn.close()
        assert not engine.invoke(engine_name, {}).cold  # one warm worker served them all
        out: dict[str, Any] = {
            way: {"median_ms": statistics.median(t), "p90_ms": sorted(t)[int(0.9 * len(t))]}
            for way, t in times.items()
        }

        stage = Stage(
            id="noop",
            callable=callable_ref(stage_noop, here),
            bindings={"x": Const(value=1)},
        )
        wf = Workflow(name="api-overhead", stages=[stage])
        plan = single_stage_plan(wf)
        store = st.LocalStore(Path(tmp) / "store")
        api = AwsLambdaBackend(
            role_arn="arn:aws:iam::000000000000:role/x",
            store_url=store.url,
            prefix="bench",
            code_root=here,
            client_factory=lambda service: _lambda_client(handle.url),
            on_this_machine=True,
        )
        unit_times: dict[str, list[float]] = {"in_process": [], "api": []}
        with LocalLambda() as local:
            invokers = {
                "in_process": LocalUnits(local, store.url, here, timeout_s=30),
                "api": api,
            }
            for i in range(reps // 2 + 1):
                for way, invoker in invokers.items():
                    run = execute(
                        wf, plan, invoker, store, workdir=Path(tmp) / way, run_id=f"{way}-{i}"
                    )
                    call = run.calls[0]
                    assert call.ok, call.invoked.error or call.invoked.payload
                    if i:  # the first is the cold start
                        unit_times[way].append((call.end_s - call.start_s) * 1000)
        out["unit"] = {way: statistics.median(t) for way, t in unit_times.items()}
        out["unit_reps"] = reps // 2
    out["reps"] = reps
    return out


def _print_api(console: Any, api: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(
        title=f"Warm invoke of a no-op function, 1769 MB, median (p90) of {api['reps']} (ms)"
    )
    labels = {
        "in_process": "LocalLambda.invoke() (in-process, the service's engine)",
        "raw_http": "HTTP POST /invocations (http.client, keep-alive)",
        "boto3": "boto3 invoke(), endpoint_url = the service",
        "boto3_tail": 'boto3 invoke(LogType="Tail") (what the AWS backend sends)',
    }
    table.add_column("call")
    table.add_column("latency", justify="right")
    table.add_column("minus in-process", justify="right")
    base = api["in_process"]["median_ms"]
    for way, label in labels.items():
        r = api[way]
        table.add_row(
            label, f"{r['median_ms']:.2f} ({r['p90_ms']:.2f})", f"{r['median_ms'] - base:+.2f}"
        )
    console.print(table)
    unit = api["unit"]
    console.print(
        f"One-stage no-op wisefuse unit, warm call as the executor times it (median of "
        f"{api['unit_reps']}): in-process LocalUnits {unit['in_process']:.2f} ms, "
        f"AwsLambdaBackend through the service {unit['api']:.2f} ms "
        f"({unit['api'] - unit['in_process']:+.2f} ms)."
    )
    worst = api["boto3_tail"]["median_ms"]
    met = worst < API_GOAL_MS
    console.print(
        f"Goal: a warm boto3 invoke through the service < {API_GOAL_MS:.0f} ms: "
        + ("[green]met[/]" if met else "[red]missed[/]")
        + f" ({worst:.2f} ms with the log tail)."
    )


def _measure(modes: list[str], reps: int) -> dict[str, dict[str, Any]]:
    """Figures per clock mode; the modes take turns run by run, so that changing load on
    the host affects them alike."""
    from contextlib import ExitStack

    from wisefuse_plugins.runtime.backends.local import FunctionConfig, LocalLambda

    here = str(Path(__file__).resolve().parent)
    out: dict[str, dict[str, Any]] = {
        mode: {
            "cpu_bound": {},
            "sleep_bound": {},
            "cpu_bound_cpu_ms": {},
            "host_wait_pct": {},
            "clock_used": {},
        }
        for mode in modes
    }
    with ExitStack() as stack:
        backends = {mode: stack.enter_context(LocalLambda(clock=mode)) for mode in modes}  # type: ignore[arg-type]

        def register(name: str, handler: str, memory_mb: int) -> None:
            config = FunctionConfig(
                name=name,
                handler=f"local_backend.{handler}",
                memory_mb=memory_mb,
                code_dir=here,
                timeout_s=60,
            )
            for ll in backends.values():
                ll.register(config)

        for kind, event in (("cpu_bound", {"n": CPU_LOOP}), ("sleep_bound", {"s": SLEEP_S})):
            for m in SIZES:
                name = f"{kind}-{m}"
                register(name, kind, m)
                for ll in backends.values():
                    ll.invoke(name, event)  # cold start, not measured
                runs: dict[str, list[Any]] = {mode: [] for mode in modes}
                for _ in range(reps):
                    for mode, ll in backends.items():
                        runs[mode].append(ll.invoke(name, event))
                for mode in modes:
                    assert all(r.ok for r in runs[mode]), runs[mode][0].error
                    out[mode][kind][str(m)] = statistics.median(r.duration_ms for r in runs[mode])
                    if kind == "cpu_bound":
                        cpu_ms = statistics.median(r.cpu_ms for r in runs[mode])
                        out[mode]["cpu_bound_cpu_ms"][str(m)] = cpu_ms
                    waits = [100 * (r.host_wait_ms or 0) / r.wall_ms for r in runs[mode]]
                    out[mode]["host_wait_pct"][name] = statistics.median(waits)
                    out[mode]["clock_used"][name] = runs[mode][0].clock
        for mode, ll in backends.items():
            cold = []
            for _ in range(3):  # registering again retires the warm worker: a new cold start
                ll.register(
                    FunctionConfig(
                        name="noop", handler="local_backend.noop", memory_mb=1769, code_dir=here
                    )
                )
                cold.append(ll.invoke("noop").init_duration_ms or 0.0)
            latencies, durations = [], []
            for _ in range(50):
                t0 = time.perf_counter()
                inv = ll.invoke("noop")
                latencies.append((time.perf_counter() - t0) * 1000)
                durations.append(inv.duration_ms)
                assert not inv.cold
            out[mode]["handler_overhead_ms"] = statistics.median(latencies)
            out[mode]["noop_duration_ms"] = statistics.median(durations)
            out[mode]["init_ms"] = statistics.median(cold)
    return out


def _cold_starts(modules: list[str], reps: int) -> list[dict[str, Any]]:
    """INIT of cold starts, spawned vs forked from a fork server preloading the module."""
    import importlib.util
    import tempfile

    from wisefuse_plugins.runtime.backends.local import FunctionConfig, LocalLambda

    here = str(Path(__file__).resolve().parent)
    rows = []
    with tempfile.TemporaryDirectory(prefix="wisefuse-bench-") as tmp:
        cases = [("light module (this file)", "local_backend.noop", here, ("json",))]
        for mod in modules:
            if importlib.util.find_spec(mod.split(".")[0]) is None:
                print(f"skipping {mod}: not installed")
                continue
            stem = "bench_imports_" + mod.replace(".", "_")
            (Path(tmp) / f"{stem}.py").write_text(
                f"import {mod}\n\ndef handler(event, context):\n    return None\n"
            )
            cases.append((f"imports {mod}", f"{stem}.handler", tmp, (mod,)))
        for label, handler, code_dir, preload in cases:
            for pre in ((), preload):
                with LocalLambda(preload=pre) as ll:
                    inits, walls = [], []
                    for _ in range(reps):  # registering again retires the warm worker: cold
                        ll.register(
                            FunctionConfig(
                                name="cold",
                                handler=handler,
                                code_dir=code_dir,
                                memory_mb=1769,
                                timeout_s=120,
                            )
                        )
                        t0 = time.perf_counter()
                        inv = ll.invoke("cold")
                        walls.append((time.perf_counter() - t0) * 1000)
                        assert inv.ok and inv.cold, inv.error
                        inits.append(inv.init_duration_ms or 0.0)
                    rows.append(
                        {
                            "handler": label,
                            "preload": list(pre),
                            "init_ms": statistics.median(inits),
                            "invoke_ms": statistics.median(walls),
                            "first_invoke_ms": walls[0],
                            "preload_ms": ll.preload_ms,
                            "preload_cpu_ms": ll.preload_cpu_ms,
                            "fallback": ll.preload_fallback,
                        }
                    )
    return rows


#: (framework, code root, DAG or flow file, the module it imports besides the framework)
SHIM_CASES = (
    ("airflow", "airflow", "ml_pipeline.py", "examples.apps.ml_pipeline"),
    ("prefect", "prefect", "ml_pipeline.py", "examples.apps.ml_pipeline"),
)
_SHIM_SCRIPT = """
import json, sys, time
t0, c0 = time.perf_counter(), time.process_time()
import wisefuse_plugins.runtime.handler
from wisefuse_plugins.runtime import loader
case, root, rel, own = sys.argv[1:5]
if case == "own":
    __import__(own)
else:
    loader.use_framework_shim(case)
    loader.load_module(rel, root)
ms, cpu = (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000
real = sorted(
    {n.split(".")[0] for n, m in sys.modules.items()
     if n.split(".")[0] in ("airflow", "prefect") and getattr(m, "__file__", None)}
)
print(json.dumps({"ms": ms, "cpu_ms": cpu, "real": real}))
"""
SHIM_GOAL_MS = 50.0


def _shim_cold_starts(reps: int) -> list[dict[str, Any]]:
    """A unit's cold start importing a DAG or flow file, in fresh interpreters.

    Per case, the median of ``reps`` runs (the three variants take turns, so that load on
    the host affects them alike) of: the imports alone (``wisefuse_plugins.runtime.handler``
    plus the file's own non-framework import), the file under the shim
    (``WISEFUSE_FRAMEWORK_SHIM=always``: stand-ins, nothing of the framework imported), and
    the file with the real framework (``never``). ``ms`` is measured inside the interpreter
    from before the handler's import to after the file's, ``wall_ms`` the whole process.
    """
    import subprocess
    import tempfile

    repo = Path(__file__).resolve().parents[1]
    rows = []
    with tempfile.TemporaryDirectory(prefix="wisefuse-bench-shim-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WISEFUSE_")}
        env.update(AIRFLOW_HOME=f"{tmp}/airflow", PREFECT_HOME=f"{tmp}/prefect")
        for framework, folder, rel, own in SHIM_CASES:
            runs: dict[str, list[dict[str, Any]]] = {"own": [], "always": [], "never": []}
            for _ in range(reps):
                for variant, got in runs.items():
                    argv = [sys.executable, "-c", _SHIM_SCRIPT, variant, str(repo / folder)]
                    t0 = time.perf_counter()
                    out = subprocess.run(
                        [*argv, rel, own], env=env, cwd=repo, capture_output=True, text=True
                    )
                    wall = (time.perf_counter() - t0) * 1000
                    if out.returncode != 0:
                        raise RuntimeError(f"{framework} {variant}: {out.stderr[-2000:]}")
                    got.append({**json.loads(out.stdout.strip().splitlines()[-1]), "wall": wall})
            row: dict[str, Any] = {
                "framework": framework,
                "file": f"{folder}/{rel}",
                "imports": own,
            }
            for variant, got in runs.items():
                row[variant] = {
                    "ms": statistics.median(r["ms"] for r in got),
                    "cpu_ms": statistics.median(r["cpu_ms"] for r in got),
                    "wall_ms": statistics.median(r["wall"] for r in got),
                    "framework_imported": sorted({n for r in got for n in r["real"]}),
                }
            row["shim_overhead_ms"] = row["always"]["ms"] - row["own"]["ms"]
            row["shim_overhead_cpu_ms"] = row["always"]["cpu_ms"] - row["own"]["cpu_ms"]
            rows.append(row)
    return rows


def _print_shim(console: Any, rows: list[dict[str, Any]], reps: int) -> None:
    from rich.table import Table

    table = Table(title=f"Cold start of a unit importing a DAG/flow file, median of {reps} (ms)")
    for col in (
        "file",
        "own imports\nms (CPU)",
        "with the shim\nms (CPU)",
        "real framework\nms (CPU)",
        "shim - own\nms (CPU)",
        "process wall\nown / shim / real",
    ):
        table.add_column(col, justify="left" if col == "file" else "right")
    for r in rows:
        own, shimmed, real = r["own"], r["always"], r["never"]
        table.add_row(
            r["file"],
            f"{own['ms']:.0f} ({own['cpu_ms']:.0f})",
            f"{shimmed['ms']:.0f} ({shimmed['cpu_ms']:.0f})",
            f"{real['ms']:.0f} ({real['cpu_ms']:.0f})",
            f"{r['shim_overhead_ms']:+.0f} ({r['shim_overhead_cpu_ms']:+.0f})",
            f"{own['wall_ms']:.0f} / {shimmed['wall_ms']:.0f} / {real['wall_ms']:.0f}",
        )
    console.print(table)
    console.print(
        "own imports: wisefuse_plugins.runtime.handler and the module the file imports "
        f"besides its framework ({', '.join(sorted({r['imports'] for r in rows}))}); with the "
        "shim: WISEFUSE_FRAMEWORK_SHIM=always, the handler's shim and the file itself; real: "
        f"the file with its framework. Goal: shim - own <= {SHIM_GOAL_MS:.0f} ms."
    )
    for r in rows:
        if r["always"]["framework_imported"]:
            console.print(
                f"[red]{r['file']}: the shim run imported {r['always']['framework_imported']}[/]"
            )


def _print_cold(console: Any, rows: list[dict[str, Any]], reps: int) -> None:
    from rich.table import Table

    table = Table(title=f"Cold starts at 1769 MB, median of {reps} (ms)")
    for col in ("handler", "preload", "Init", "invoke()", "first invoke()", "preload once (CPU)"):
        table.add_column(col, justify="left" if col in ("handler", "preload") else "right")
    for r in rows:
        once = (
            f"{r['preload_ms']:.0f} ({r['preload_cpu_ms']:.0f})"
            if r["preload_ms"] is not None
            else "-"
        )
        table.add_row(
            r["handler"],
            ", ".join(r["preload"]) or "- (spawned)",
            f"{r['init_ms']:.1f}",
            f"{r['invoke_ms']:.1f}",
            f"{r['first_invoke_ms']:.1f}",
            once,
        )
    console.print(table)
    console.print(
        "preload once: the fork server's import of wisefuse_plugins.runtime.handler and the "
        "preloads, paid once by the first cold start (its invoke()) and not counted in any "
        "Init; with preload, Init understates a real Lambda cold start by the preloads' "
        "import time."
    )
    for r in rows:
        if r["fallback"]:
            console.print(f"[yellow]{r['handler']}: preload fell back: {r['fallback']}[/]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--reps", type=int, default=5, help="warm runs per size (median)")
    parser.add_argument(
        "--cold-modules",
        default="airflow.sdk",
        help="comma-separated modules a handler imports, for the preload cold starts",
    )
    parser.add_argument("--cold-reps", type=int, default=3, help="cold starts per case (median)")
    parser.add_argument(
        "--cold-only", action="store_true", help="only the cold starts with and without preload"
    )
    parser.add_argument(
        "--shim-reps", type=int, default=5, help="fresh interpreters per shim case (median)"
    )
    parser.add_argument(
        "--shim-only",
        action="store_true",
        help="only the cold starts of a unit importing a DAG/flow file, with and without the shim",
    )
    parser.add_argument(
        "--api-reps", type=int, default=50, help="warm calls per way through the service's API"
    )
    parser.add_argument(
        "--api-only",
        action="store_true",
        help="only the warm invoke overhead through the local Lambda service's API",
    )
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    from wisefuse_plugins.plan.limits import vcpus
    from wisefuse_plugins.runtime.backends.local import host_info

    console = Console(width=None if sys.stdout.isatty() else 130)
    host = host_info()
    modes = (["cgroup"] if host.cpu_cgroup is not None else []) + ["cpu-clock"]
    console.print(
        f"[bold]Local Lambda backend[/]: CPU-bound loop of {CPU_LOOP:,} iterations (one thread) "
        f"and a {SLEEP_S * 1000:.0f} ms sleep, at {', '.join(map(str, SIZES))} MB; "
        f"median of {args.reps} warm runs each, the clock modes {modes} taking turns.\n"
        f"Host: {host.cores} cores, load average {os.getloadavg()[0]:.2f}; "
        f"cgroup v1 cpu: {host.cpu_reason if host.cpu_cgroup is None else 'yes'}; "
        f"memory: {host.memory_reason if host.memory_cgroup is None else 'yes'}; "
        f"schedstat: {host.schedstat}; Python {sys.version.split()[0]}."
    )
    if host.cpu_cgroup is None:
        console.print(f"[yellow]cgroup mode unavailable: {host.cpu_reason}[/]")
    started = time.perf_counter()
    modules = [m for m in args.cold_modules.split(",") if m]
    if args.api_only:
        api = _api_overhead(args.api_reps)
        _print_api(console, api)
        console.print(f"Ran in {time.perf_counter() - started:.0f} s.")
        if args.json:
            args.json.write_text(json.dumps({"api_overhead": api}, indent=2))
        return 0
    if args.shim_only:
        shim_rows = _shim_cold_starts(args.shim_reps)
        _print_shim(console, shim_rows, args.shim_reps)
        console.print(f"Ran in {time.perf_counter() - started:.0f} s.")
        if args.json:
            args.json.write_text(json.dumps({"shim_cold_starts": shim_rows}, indent=2))
        return 0
    if args.cold_only:
        cold = _cold_starts(modules, args.cold_reps)
        _print_cold(console, cold, args.cold_reps)
        console.print(f"Ran in {time.perf_counter() - started:.0f} s.")
        if args.json:
            args.json.write_text(json.dumps({"cold_starts": cold}, indent=2))
        return 0
    by_mode = _measure(modes, args.reps)

    table = Table(title="Lambda-equivalent duration (ms), median of warm runs")
    table.add_column("memory MB", justify="right")
    table.add_column("vCPU", justify="right")
    for mode in modes:
        table.add_column(f"CPU-bound\n{mode}", justify="right")
    table.add_column(f"CPU ms\n{modes[0]} runs", justify="right")
    table.add_column("CPU-bound\nexpected*", justify="right")
    for mode in modes:
        table.add_column(f"sleep-bound\n{mode}", justify="right")
    for m in SIZES:
        cpu_ms = by_mode[modes[0]]["cpu_bound_cpu_ms"][str(m)]
        table.add_row(
            str(m),
            f"{vcpus(m):.3f}",
            *[f"{by_mode[mode]['cpu_bound'][str(m)]:.1f}" for mode in modes],
            f"{cpu_ms:.1f}",
            f"{cpu_ms / min(vcpus(m), 1.0):.1f}",
            *[f"{by_mode[mode]['sleep_bound'][str(m)]:.1f}" for mode in modes],
        )
    console.print(table)
    console.print(
        "* expected: the CPU time of those runs / min(vCPU, 1) (one thread cannot use more "
        "than 1 vCPU); host CPU speed varies with other load, so the CPU time is measured."
    )
    over = Table(title="Backend overhead (warm no-op, 1769 MB)")
    for col in (
        "clock",
        "invoke() latency ms (median of 50)",
        "reported Duration ms",
        "cold start (Init) ms",
    ):
        over.add_column(col, justify="right")
    for mode in modes:
        r = by_mode[mode]
        over.add_row(
            mode,
            f"{r['handler_overhead_ms']:.2f}",
            f"{r['noop_duration_ms']:.2f}",
            f"{r['init_ms']:.1f}",
        )
    console.print(over)
    waits = {
        mode: max(by_mode[mode]["host_wait_pct"].values()) for mode in modes if mode == "cpu-clock"
    }
    if waits:
        console.print(
            f"cpu-clock: workers waited for a host CPU at most {waits['cpu-clock']:.1f}% of their "
            "time (median per size); that wait is discounted from the figures."
        )
    cold = _cold_starts(modules, args.cold_reps)
    _print_cold(console, cold, args.cold_reps)
    shim_rows = _shim_cold_starts(args.shim_reps)
    _print_shim(console, shim_rows, args.shim_reps)
    runtime = _runtime_overhead(args.reps)
    api = _api_overhead(args.api_reps)
    _print_api(console, api)
    console.print(
        f"wisefuse unit handler, warm one-stage no-op unit (median of {args.reps}): "
        f"{runtime['runtime_handler_ms']:.2f} ms of the handler's own work "
        f"(goal < 5 ms), {runtime['invocation_ms']:.2f} ms Lambda-equivalent invocation"
    )
    console.print(f"Ran in {time.perf_counter() - started:.0f} s.")

    if args.json:
        best = modes[0]
        doc = {
            "cpu_bound": by_mode[best]["cpu_bound"],
            "sleep_bound": by_mode[best]["sleep_bound"],
            "clock_modes": modes,
            "handler_overhead_ms": runtime["runtime_handler_ms"],
            "backend_overhead_ms": by_mode[best]["handler_overhead_ms"],
            "runtime_invocation_ms": runtime["invocation_ms"],
            "by_mode": by_mode,
            "cold_starts": cold,
            "shim_cold_starts": shim_rows,
            "api_overhead": api,
            "params": {
                "sizes_mb": SIZES,
                "cpu_loop": CPU_LOOP,
                "sleep_s": SLEEP_S,
                "reps": args.reps,
            },
            "host": {
                "cores": host.cores,
                "cpu_cgroup": host.cpu_cgroup is not None,
                "memory_cgroup": host.memory_cgroup is not None,
                "schedstat": host.schedstat,
                "loadavg": os.getloadavg()[0],
            },
        }
        args.json.write_text(json.dumps(doc, indent=2))
        console.print(f"Wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
