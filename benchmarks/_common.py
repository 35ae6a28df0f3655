"""What the example-app benchmarks share: load an app, one local Lambda, profile, measure.

``model_accuracy.py`` and ``apps.py`` both:

1. load an example app's Airflow DAG (``airflow/*.py``) into the IR at a benchmark size and
   run it once in-process to learn its mapped stages' real widths (:func:`load_app`);
2. open one :class:`Session`: a temporary ``WISEFUSE_HOME`` with its own profile archive
   and store, and one :class:`~wisefuse_plugins.runtime.backends.local.LocalLambda` for
   the whole benchmark (a fork server preloading ``airflow.sdk`` when the backend has one,
   so the DAG file's import does not make every cold start seconds long);
3. calibrate the backend and profile each app's stages into that archive, and build the
   model from it (:meth:`Session.profile`);
4. run plans for real with :func:`~wisefuse_plugins.runtime.measure.measure`
   (:meth:`Session.measure`): one warm-up run, then the measured runs, as many
   invocations at once as the host's cores hold at the plan's CPU shares.

Nothing here is a test: the scripts print figures. See ``docs/benchmarks.md``.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import platform as pyplatform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wisefuse_plugins.demo import environment

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / "out"

#: BLAS threads per worker. OpenBLAS starts one spinning thread per *host* core, which
#: under a CFS quota of a fraction of a core is much slower than the share predicts and
#: varies with the host's load (docs/local-backend.md); one thread per process gives
#: stable figures. Set before any worker starts (LocalUnits gives them to every unit: thread_env).
BLAS_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class App:
    """One example app: its DAG file, the stages to fuse and bundle in the benchmarks."""

    key: str
    dag_file: str  # under airflow/
    module: str  # the plain-Python workload, examples.apps.*
    chain: tuple[str, ...]  # an in-series chain worth fusing
    mapped: tuple[str, ...]  # the mapped stages (bundled together when a plan bundles)
    #: Constant arguments of the DAG's tasks, per size: ``{stage: {param: value}}``. The DAG
    #: file itself is parsed at its "small" size (``WISEFUSE_EXAMPLE_SIZE``); these
    #: replace the IR's constants, so stages run the same code on other inputs.
    sizes: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)


_ML = {
    "load_data": {"n_samples": 1200, "n_features": 20, "seed": 11},
    "pca": {"n_components": 4},
    "make_grid": {"n_alphas": 2, "n_gammas": 3, "n_folds": 3},
}
_SVD = {
    "make_matrix": {"n_rows": 100_000, "n_cols": 200, "rank": 8, "seed": 5},
    "split_blocks": {"n_blocks": 4},
}
#: Sizes: "bench" for model_accuracy.py, "apps" for apps.py (runs every planner's plan, so
#: its video is smaller), "small" the examples' own (the --quick smoke runs).
APPS: dict[str, App] = {
    "video": App(
        "video",
        "video_analytics.py",
        "examples.apps.video",
        chain=("extract_features", "classify"),
        mapped=("extract_features", "classify"),
        sizes={
            # 6 chunks of 8 frames of 32x40: per chunk 20-500 ms of one core (skewed)
            "bench": {
                "split_video": {
                    "n_chunks": 6,
                    "frames_per_chunk": 8,
                    "height": 32,
                    "width": 40,
                    "seed": 7,
                }
            },
            # 6 chunks of 6 frames of 24x32: per chunk 15-220 ms of one core
            "apps": {
                "split_video": {
                    "n_chunks": 6,
                    "frames_per_chunk": 6,
                    "height": 24,
                    "width": 32,
                    "seed": 7,
                }
            },
            "small": {},
        },
    ),
    "ml": App(
        "ml",
        "ml_pipeline.py",
        "examples.apps.ml_pipeline",
        chain=("load_data", "pca"),
        mapped=("train_trial",),
        sizes={
            # 1,200 samples, 6 trials of 3-fold CV: 40-150 ms of one core per trial
            "bench": _ML,
            "apps": _ML,
            "small": {},
        },
    ),
    "svd": App(
        "svd",
        "approx_svd.py",
        "examples.apps.svd",
        chain=("make_matrix", "split_blocks"),
        mapped=("block_product",),
        sizes={
            # 100,000 x 200 in 4 blocks: ~75 ms of one core per block sketch
            "bench": _SVD,
            "apps": _SVD,
            "small": {},
        },
    ),
}


def parse_apps(text: str) -> list[App]:
    keys = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in keys if k not in APPS]
    if unknown:
        raise SystemExit(f"unknown app(s) {unknown}; choose from {', '.join(APPS)}")
    return [APPS[k] for k in keys]


# --------------------------------------------------------------------------- apps


@dataclass
class LoadedApp:
    app: App
    size: str
    workflow: Any  # wisefuse_plugins.ir.Workflow, with observed parallelism
    expected: dict[str, Any]  # the outputs of the in-process run
    seconds: float

    @property
    def widths(self) -> dict[str, int]:
        return {s.id: s.parallelism for s in self.workflow.stages if s.mapped}


def _with_constants(workflow: Any, constants: dict[str, dict[str, Any]]) -> Any:
    from wisefuse_plugins.ir import Const

    stages = []
    for s in workflow.stages:
        wanted = constants.get(s.id, {})
        if wanted:
            bindings = dict(s.bindings)
            for name, value in wanted.items():
                if not isinstance(bindings.get(name), Const):
                    raise ValueError(f"{workflow.name}.{s.id}: {name!r} is not a constant")
                bindings[name] = Const(value=value)
            s = s.model_copy(update={"bindings": bindings})
        stages.append(s)
    return workflow.with_stages(stages)


def load_app(app: App, size: str = "bench") -> LoadedApp:
    """The app's DAG as IR at ``size``, with the widths one in-process run observed."""
    from wisefuse_plugins.adapters.airflow import workflow_from_file
    from wisefuse_plugins.runtime.observe import observe

    t0 = time.perf_counter()
    with environment(WISEFUSE_EXAMPLE_SIZE="small", AIRFLOW__CORE__LOAD_EXAMPLES="False"):
        workflow = workflow_from_file(REPO / "airflow" / app.dag_file)
    if size not in app.sizes:
        raise ValueError(f"app {app.key!r} has no size {size!r}: {sorted(app.sizes)}")
    workflow = _with_constants(workflow, app.sizes[size])
    workflow, expected = observe(workflow)
    return LoadedApp(app, size, workflow, expected, time.perf_counter() - t0)


def same_result(a: Any, b: Any, rel: float = 1e-9) -> bool:
    """Equal outputs, floats within ``rel`` (:func:`wisefuse_plugins.runtime.compare.same_outputs`)."""
    from wisefuse_plugins.runtime.compare import same_outputs

    return same_outputs(a, b, rel)


# --------------------------------------------------------------------------- session


def _local_lambda(concurrency_limit: int, keep_alive_s: float, clock: str) -> Any:
    from wisefuse_plugins.runtime.backends.local import LocalLambda

    kwargs: dict[str, Any] = {
        "keep_alive_s": keep_alive_s,
        "concurrency_limit": concurrency_limit,
        "clock": clock,
    }
    if "preload" in inspect.signature(LocalLambda.__init__).parameters:
        kwargs["preload"] = ("airflow.sdk",)
    return LocalLambda(**kwargs)


class Session:
    """One temporary home (archive + store) and one local Lambda for a whole benchmark."""

    def __init__(
        self, *, clock: str = "auto", concurrency_limit: int = 96, keep_alive_s: float = 3600.0
    ) -> None:
        for k, v in BLAS_ENV.items():
            os.environ.setdefault(k, v)
        self.tmp = Path(tempfile.mkdtemp(prefix="wisefuse-bench-"))
        home = self.tmp / "home"
        home.mkdir()
        self._env = environment(
            WISEFUSE_HOME=str(home),
            WISEFUSE_DB_URL=f"sqlite:///{home / 'profiles.sqlite'}",
        )
        self._env.__enter__()
        from wisefuse_plugins.profiles.archive import open_archive
        from wisefuse_plugins.runtime import store as st

        self.store = st.LocalStore(self.tmp / "store")
        self.archive = open_archive()
        self.lam = _local_lambda(concurrency_limit, keep_alive_s, clock)
        self.platform: Any = None
        self.profile_s: dict[str, float] = {}
        self.probes: list[float] = []
        self._units: dict[str, Any] = {}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.lam.close()
        with contextlib.suppress(Exception):
            self.archive.close()
        self._env.__exit__(None, None, None)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def preload(self) -> tuple[str, ...]:
        return tuple(getattr(self.lam, "preload", ()) or ())

    @property
    def cores(self) -> int:
        return self.lam.host.cores

    def units(self, workflow: Any) -> Any:
        """One invoker per workflow for the whole session: it registers a function only
        when the function's configuration changes, so warm workers stay warm."""
        from wisefuse_plugins.runtime.backends.units import LocalUnits

        found = self._units.get(workflow.name)
        if found is None:
            found = LocalUnits(self.lam, self.store.url, Path(workflow.source.root), timeout_s=600)
            self._units[workflow.name] = found
        return found

    def probe(self, repeats: int = 3) -> float:
        """Parallel speedup of two GIL-free threads in one invocation with the host's cores
        as its share (see ``_probe.py``): the cores an invocation can really use now."""
        from wisefuse_plugins.plan.limits import MAX_MEMORY_MB
        from wisefuse_plugins.runtime.backends.local import FunctionConfig

        memory = min(MAX_MEMORY_MB, math.ceil(1769 * self.cores))
        self.lam.register(
            FunctionConfig(
                name="wisefuse-bench-probe",
                handler="_probe:handler",
                memory_mb=memory,
                timeout_s=120,
                code_dir=str(Path(__file__).parent),
            )
        )
        ratios = []
        for _ in range(repeats + 1):
            inv = self.lam.invoke("wisefuse-bench-probe", {})
            if inv.error is None and inv.payload:
                p = inv.payload
                ratios.append(p["sequential_s"] / max(p["parallel_s"], 1e-9))
        speedup = statistics.median(ratios[1:] or ratios or [1.0])
        self.probes.append(speedup)
        return speedup

    def usable_cores(self) -> float:
        """Cores concurrent invocations may share without slowing each other (>= 1)."""
        if not self.probes:
            self.probe()
        return max(1.0, min(float(self.cores), self.probes[-1]))

    def calibrate(self, again: bool = False) -> Any:
        """The local platform constants (store, invocation overhead); measured on the first
        call and when ``again`` (the store's latency moves with the host's disk load)."""
        if self.platform is None or again:
            from wisefuse_plugins.profiles.calibrate import calibrate_local

            self.platform = calibrate_local(self.store, self.lam, archive=self.archive)
        return self.platform

    def profile(
        self,
        loaded: LoadedApp,
        *,
        memories: Sequence[int],
        runs: int,
        bundles: Sequence[int] = (1,),
    ) -> Any:
        """Calibrate, profile every stage of the app into this session's archive; the fitted
        model (platform constants measured again per app, next to its measurements)."""
        from wisefuse_plugins.model.predict import Model
        from wisefuse_plugins.profiles.profiler import ProfileBench, ProfileGrid, profile_workflow

        platform = self.calibrate(again=True)
        wf = loaded.workflow
        t0 = time.perf_counter()
        summary = profile_workflow(
            wf,
            ProfileGrid(memories=memories, bundles=bundles, runs=runs),
            ProfileBench(
                backend=self.units(wf),
                store=self.store,
                code_root=wf.source.root,
                workdir=self.tmp / "profile" / wf.name,
            ),
            archive=self.archive,
            progress=False,
        )
        self.profile_s[loaded.app.key] = time.perf_counter() - t0
        for failure in getattr(summary, "failures", []):
            print(f"  could not profile {failure}", flush=True)
        return Model(self.archive.profiles_for(wf), platform)

    def measure_many(
        self,
        loaded: LoadedApp,
        plans: Sequence[tuple[str, Any]],
        *,
        runs: int,
        warmup: int = 1,
        tag: str = "",
    ) -> dict[str, Any]:
        """Run every plan ``warmup + runs`` times, taking turns run by run; their figures.

        Taking turns puts the plans under the same host conditions (other load comes and
        goes over minutes). Each plan's units become functions of their own (unit ids
        prefixed with the plan's position) so that all of them stay warm between turns;
        the warm-up round pays the cold starts. Per plan, as many invocations run at once
        as the usable cores hold at the plan's CPU shares (:func:`concurrency_for`).
        """
        from wisefuse_plugins.runtime.measure import Measured, concurrency_for, measure

        wf = loaded.workflow
        platform = self.calibrate()
        cores = self.usable_cores()
        tagged = [
            (name, _tagged(plan, f"{loaded.app.key}{tag}{i}"))
            for i, (name, plan) in enumerate(plans)
        ]
        # tagged unit id -> the plan's own, per plan: what Measured.unit_ms is keyed by
        original = {
            name: {t.id: u.id for t, u in zip(tp.units, plan.units, strict=True)}
            for (name, tp), (_, plan) in zip(tagged, plans, strict=True)
        }
        found = {name: Measured(runs=0) for name, _ in plans}
        for r in range(warmup + runs):
            last = r == warmup + runs - 1
            for name, plan in tagged:
                m = measure(
                    wf,
                    plan,
                    self.units(wf),
                    self.store,
                    workdir=self.tmp / "units" / wf.name,
                    runs=1,
                    warmup=0,
                    # the model's hand-off per step (the executor sleeps it; the
                    # Lambda-equivalent E2E counts it once per unit on the path)
                    orchestration_s=platform.orchestration_ms / 1000,
                    max_concurrency=concurrency_for(plan, cores),
                    keep_outputs=last,
                    by_value=int(platform.by_value_bytes),
                )
                if r < warmup:
                    continue
                into = found[name]
                into.runs += 1
                into.e2e_s += m.e2e_s
                into.wall_s += m.wall_s
                into.cost_usd += m.cost_usd
                into.cold_starts += m.cold_starts
                if m.outputs is not None:
                    into.outputs = m.outputs
                for uid, ms in m.unit_ms.items():
                    into.unit_ms.setdefault(original[name].get(uid, uid), []).extend(ms)
        return found

    def measurer(self, loaded: LoadedApp, *, runs: int, tag: str) -> Any:
        """``measure(plan)`` for :func:`wisefuse_plugins.optimizer.feedback.tune`: one plan,
        1 warm-up + ``runs`` runs, its units as functions named after ``tag`` (each plan
        measured replaces the last one's functions, so their workers do not pile up)."""

        def measure(plan: Any) -> Any:
            return self.measure_many(loaded, [(tag, plan)], runs=runs, tag=tag)[tag]

        return measure


def _tagged(plan: Any, tag: str) -> Any:
    """``plan`` with unit ids prefixed by ``tag`` (unique Lambda function names)."""
    from wisefuse_plugins.ir.names import safe_name

    taken: set[str] = set()
    units = []
    for u in plan.units:
        uid = safe_name(f"{tag}-{u.id}", taken)
        taken.add(uid)
        units.append(u.model_copy(update={"id": uid}))
    return plan.model_copy(update={"units": units})


def app_arguments(description: str, plot: str, what: str) -> Any:
    """The arguments the app benchmarks share (``what``: "plan" or "case")."""
    import argparse

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument(
        "--apps", default=None, help="comma-separated: video,ml,svd (default all; --quick: svd)"
    )
    ap.add_argument(
        "--runs", type=int, default=30, help=f"measured runs per {what} (after a warm-up)"
    )
    ap.add_argument("--profile-runs", type=int, default=10, help="samples per stage and memory")
    ap.add_argument("--json", default=None, help="write the figures there")
    ap.add_argument("--plot", default=str(OUT / plot))
    ap.add_argument(
        "--clock",
        default="cpu-clock",
        choices=("auto", "cgroup", "cpu-clock"),
        help="the local Lambda's clock (docs/benchmarks.md says why cpu-clock by default)",
    )
    return ap


# --------------------------------------------------------------------------- output


def plain_log_axes(ax: Any) -> None:
    """Log axes labelled 0.15, 0.2, 0.3 rather than 1.5x10^-1 (and no crowded minor labels)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    label = FuncFormatter(lambda v, _: f"{v:g}")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(label)
        axis.set_minor_formatter(NullFormatter())


def platform_line(platform: Any) -> str:
    return f"platform (calibrated): {platform.describe()}"


def host_line(clock: str = "auto") -> str:
    """Where the figures come from: cores, load, clock, Python."""
    from wisefuse_plugins.runtime.backends.local import host_info

    h = host_info()
    load = os.getloadavg()
    if clock == "auto":
        clock = (
            f"auto (cgroup CPU quota up to {h.cores} vCPU, cpu-clock above)"
            if h.cpu_cgroup is not None
            else "auto (cpu-clock: no writable cgroup v1 CPU controller)"
        )
    return (
        f"host: {h.cores} cores, load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} "
        f"(1/5/15 min), clock {clock}, Python {pyplatform.python_version()} on {sys.platform}"
    )


def write_json(path: str | Path | None, data: dict[str, Any]) -> None:
    if path is None:
        return
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n", encoding="utf-8")
    print(f"figures written to {p}")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")


def pct(x: float) -> str:
    return f"{x * 100:+.1f}%"


def fmt_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], *, left: int = 1, align: str = ""
) -> str:
    """A plain text table: ``align`` one of "l"/"r" per column, else the first ``left``
    columns left-aligned (text) and the others right-aligned (figures)."""
    align = align or "l" * left + "r" * (len(headers) - left)
    cells = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.ljust(w) if a == "l" else v.rjust(w)
            for v, w, a in zip(values, widths, align, strict=True)
        ).rstrip()

    head = line(headers)
    return "\n".join([head, "-" * len(head), *(line(r) for r in cells)])
