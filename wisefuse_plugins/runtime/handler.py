"""The Lambda entry point that runs any unit of a plan: ``handler(event, context)``.

Deployment (environment, fixed per function):

- ``WISEFUSE_UNIT_SPEC``: path of the unit spec (:mod:`wisefuse_plugins.runtime.spec`);
- ``WISEFUSE_CODE_ROOT``: the user's source root (default ``$LAMBDA_TASK_ROOT`` or cwd);
- ``WISEFUSE_STORE``: the store URL (``s3://bucket/prefix`` on AWS).

Event (per invocation)::

    {"run_id": "r-1", "instances": [0, 1], "counts": {"split_video": 8}}

``instances``: which instances a bundled unit runs; ``counts`` (optional): how many
elements or instances an upstream stage outside the unit produced (for ``collect`` and
mapping); without it the handler counts the upstream's keys in the store.
``resume`` (optional, set by orchestrators on a retry): outputs a previous attempt
stored are loaded instead of recomputed (without it they are recomputed, and still never
overwritten: writes are create-if-absent).
``by_value`` and ``values`` (optional, set by orchestrators that pass values themselves,
:mod:`.passing`): outputs whose pickle is at most ``by_value`` bytes come back in the
response instead of going to the store; ``values`` holds upstream values by store key,
read before the store.
``log_bytes`` (optional, set by orchestrators that show a unit's output in their task logs,
at most :data:`.capture.LOG_BYTES`): capture what the functions print and log, and return
up to that many bytes of it (:mod:`.capture`); without it nothing is captured (a Step
Functions state carries 256 KB at most).
``raise_errors`` (optional, Step Functions sets it): a failure raises
:class:`WiseFuseUnitFailed` instead of returning ``ok: false``, so that Lambda reports a
``FunctionError`` and the state machine's ``Retry`` / ``Catch`` see it.

What happens: stages run in order in this process; values inside the unit pass in
memory (fusion); a bundle's instances run concurrently on ``ceil(vCPU)`` threads, each
running its whole chain (bundling); inputs from outside are read from the store once per
invocation and shared; each exported output is written once, atomically, at
``runs/<run>/<stage>/...``. A retried invocation (``resume``) finds its outputs already
stored, loads them instead of recomputing and leaves the store as it was.

Response: ``{"ok": true, "outputs": [...], "timings": [...], "logs": [...], "handler_ms": ...}`` (a
timing per stage instance: ``ms`` in all, ``fn_ms`` in the user's function alone and
``fn_t`` its [start, end] on CLOCK_MONOTONIC, which the local backend's CPU-time clock
turns into the function's Lambda-equivalent ``fn_eq_ms``; the
store requests made, ``store: {gets, puts}``, billed as S3 bills them); small
JSON outputs also come back inline (within ``WISEFUSE_INLINE_BYTES``, 8 KB by default,
far below Lambda's 6 MB response limit). A failing task gives ``{"ok": false, "error":
{"stage", "instance", "type", "message", "traceback"}}``. A unit whose spec lists
``bundles`` adds ``"chunks": {slot: [[0, 1], [2, 3], ...]}``: the instance chunks of each
bundled unit downstream, which a Step Functions Map iterates over. ``logs`` (with
``log_bytes``, failures too): what the stages' functions printed and logged, a record per
line naming the stage and instance (``<setup>`` for the cold start's imports), within
``log_bytes`` and with an explicit last record when cut; it also goes to the real streams.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.ir.nodes import Collect, Const, ConstItem, Item, Output
from wisefuse_plugins.plan.limits import bundle_threads
from wisefuse_plugins.plan.lower import agreed_count, chunks
from wisefuse_plugins.runtime import capture, passing
from wisefuse_plugins.runtime import store as st
from wisefuse_plugins.runtime.loader import load_callable, use_framework_shim
from wisefuse_plugins.runtime.spec import StageSpec, UnitSpec, read_spec

ENV_SPEC = "WISEFUSE_UNIT_SPEC"
ENV_ROOT = "WISEFUSE_CODE_ROOT"
ENV_STORE = "WISEFUSE_STORE"
ENV_INLINE = "WISEFUSE_INLINE_BYTES"
#: small enough that checking and encoding the values costs well under a millisecond at
#: 512 MB (at 64 KB it cost 4-8 ms per invocation at 1024 MB: ml's pca, video's split);
#: larger values go by reference, one store GET for whoever wants them
DEFAULT_INLINE_BYTES = 8 * 1024


class EventError(WiseFuseError):
    """The invocation event is malformed."""


class WiseFuseUnitFailed(Exception):
    """Raised for a failed unit when the event asks for it (Lambda's errorType names it)."""

    def __init__(self, error: dict[str, Any]) -> None:
        info = {k: v for k, v in error.items() if k != "traceback"}
        info["traceback"] = str(error.get("traceback", ""))[-4000:]
        super().__init__(json.dumps(info, default=str))
        self.error = error


@dataclass
class LoadedUnit:
    """A unit loaded in its execution environment: its spec, the user's functions imported,
    the store opened. A warm environment keeps it between invocations. (Not to be confused
    with the handle to a deployed function, ``providers.airflow.hooks.Deployed``.)"""

    spec: UnitSpec
    root: Path
    store: st.Store
    functions: dict[str, Callable]

    @classmethod
    def from_env(cls) -> LoadedUnit:
        spec_path = os.environ.get(ENV_SPEC)
        if not spec_path:
            raise WiseFuseError(f"{ENV_SPEC} is not set", hint="deploy the unit with wisefuse")
        spec = read_spec(spec_path)
        root = Path(os.environ.get(ENV_ROOT) or os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd())
        store = st.open_store(os.environ.get(ENV_STORE))
        use_framework_shim()  # WISEFUSE_FRAMEWORK_SHIM: DAG/flow files without Airflow/Prefect
        functions = {s.id: load_callable(s.callable, root) for s in spec.stages}
        return cls(spec, root, store, functions)


_loaded: LoadedUnit | None = None
_loaded_key: tuple[str | None, ...] | None = None


def loaded_unit() -> LoadedUnit:
    """The cached unit (loaded on the cold start, like module-level init on Lambda)."""
    global _loaded, _loaded_key
    key = tuple(os.environ.get(k) for k in (ENV_SPEC, ENV_ROOT, ENV_STORE))
    if _loaded is None or key != _loaded_key:
        _loaded, _loaded_key = LoadedUnit.from_env(), key
    return _loaded


@dataclass
class Request:
    run_id: str
    instances: list[int] | None
    counts: dict[str, int]
    resume: bool = False  # a retry: reuse outputs a previous attempt stored
    by_value: int = 0  # outputs whose pickle is at most this come back, not stored
    values: dict[str, str] = field(default_factory=dict)  # store key -> base64 pickle
    log_bytes: int = 0  # what the functions print, returned up to this many bytes


def parse_event(event: Any, spec: UnitSpec) -> Request:
    if not isinstance(event, dict):
        raise EventError(f"event must be a JSON object, got {type(event).__name__}")
    run_id = event.get("run_id")
    if not isinstance(run_id, str):
        raise EventError("event.run_id must be a string")
    st.check_run_id(run_id)
    instances = event.get("instances")
    if spec.bundled:
        if (
            not isinstance(instances, list)
            or not instances
            or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in instances)
        ):
            raise EventError(
                f"unit {spec.unit!r} is bundled: event.instances must be a non-empty list of instance numbers"
            )
    elif instances is not None:
        raise EventError(f"unit {spec.unit!r} is not bundled: event.instances must be absent")
    counts = event.get("counts") or {}
    if not isinstance(counts, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
        for k, v in counts.items()
    ):
        raise EventError("event.counts must map stage ids to non-negative integers")
    resume = event.get("resume", False)
    if not isinstance(resume, bool):
        raise EventError("event.resume must be true or false")
    by_value = event.get("by_value", 0)
    if not isinstance(by_value, int) or isinstance(by_value, bool) or by_value < 0:
        raise EventError("event.by_value must be a non-negative number of bytes")
    values = event.get("values") or {}
    if not isinstance(values, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in values.items()
    ):
        raise EventError("event.values must map store keys to base64 pickles")
    log_bytes = event.get("log_bytes", 0)
    if log_budget(event) != log_bytes:
        raise EventError(
            f"event.log_bytes must be a number of bytes from 0 to {capture.LOG_BYTES}"
            " (what a response carries of the unit's log lines)"
        )
    return Request(run_id, instances, counts, resume, by_value, values, log_bytes)


def log_budget(event: Any) -> int:
    """The event's ``log_bytes`` when it is valid, else 0 (:func:`parse_event` says why)."""
    n = event.get("log_bytes", 0) if isinstance(event, dict) else 0
    ok = isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= capture.LOG_BYTES
    return n if ok else 0


class StageFailed(Exception):
    def __init__(self, stage: str, instance: int | None, err: BaseException) -> None:
        super().__init__(f"{stage}[{instance}]: {err}")
        self.info = {
            "stage": stage,
            "instance": instance,
            "type": type(err).__name__,
            "message": str(err)
            or ("out of memory (the unit's memory limit)" if isinstance(err, MemoryError) else ""),
            "traceback": "".join(traceback.format_exception(err)),
        }


@dataclass
class Invocation:
    """One run of the unit: the in-memory values, the store reads and the records."""

    dep: LoadedUnit
    req: Request
    threads: int
    logs: capture.Capture = field(default_factory=capture.Capture)
    store: st.CountingStore = field(init=False)
    values: dict[tuple[str, int | None], Any] = field(default_factory=dict)
    _reads: dict[str, Any] = field(default_factory=dict)
    _read_lock: threading.Lock = field(default_factory=threading.Lock)
    _listed: dict[str, int] = field(default_factory=dict)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    timings: list[dict[str, Any]] = field(default_factory=list)
    _record_lock: threading.Lock = field(default_factory=threading.Lock)
    _by_value_left: int = passing.RESPONSE_BYTES

    def __post_init__(self) -> None:
        self.store = st.CountingStore(self.dep.store)

    @property
    def spec(self) -> UnitSpec:
        return self.dep.spec

    # -- inputs -------------------------------------------------------------------------

    def _read(self, key: str) -> Any:
        """Read an outside value once per invocation, however many instances need it:
        from the event when it came by value, else from the store."""
        with self._read_lock:
            if key not in self._reads:
                text = self.req.values.get(key)
                self._reads[key] = (
                    st.get(self.store, key) if text is None else st.loads(passing.decode(text))
                )
            return self._reads[key]

    def _inside(self, stage: str) -> bool:
        return any(s.id == stage for s in self.spec.stages)

    def _mapped(self, stage: str) -> bool:
        return any(s.id == stage and s.mapped for s in self.spec.stages)

    def _count(self, stage: str) -> int:
        """Instances (or scattered elements) an outside stage produced.

        From ``event.counts`` when the orchestrator knows it; otherwise by listing the
        store (orchestrators such as Step Functions then need not pass counts around), and
        the event's values passed by value.
        """
        if stage in self.req.counts:
            return self.req.counts[stage]
        whole = st.output_key(self.req.run_id, stage)
        if whole in self.req.values:  # a list scattered by value: its elements are not stored
            return len(self._read(whole))
        with self._read_lock:
            if stage not in self._listed:
                prefix = f"runs/{self.req.run_id}/{stage}"
                keys = {
                    *self.store.list(prefix),
                    *(k for k in self.req.values if k.startswith(prefix + "/")),
                }
                names = [k.rsplit("/", 1)[-1] for k in keys]
                per_instance = sum(1 for n in names if n.startswith("i"))
                self._listed[stage] = per_instance or sum(1 for n in names if n.startswith("e"))
            return self._listed[stage]

    def _whole(self, stage: str, key: str | None) -> Any:
        if self._inside(stage):
            value = self.values[stage, None]
        else:
            value = self._read(st.output_key(self.req.run_id, stage))
        return value if key is None else value[key]

    def _instance_value(self, stage: str, i: int) -> Any:
        if self._inside(stage):
            return self.values[stage, i]
        return self._read(st.output_key(self.req.run_id, stage, i))

    def resolve(self, binding: Any, instance: int | None) -> Any:
        if isinstance(binding, Const):
            return binding.value
        if isinstance(binding, ConstItem):
            return binding.values[instance]
        if isinstance(binding, Output):
            return self._whole(binding.stage, binding.key)
        if isinstance(binding, Item):
            src, inside = binding.stage, self._inside(binding.stage)
            src_mapped = self._mapped(src) if inside else src in self.spec.mapped_upstream
            if src_mapped:  # instance i of a mapped stage feeds instance i
                value = self._instance_value(src, instance)
                return value if binding.key is None else value[binding.key]
            whole = st.output_key(self.req.run_id, src)
            if not inside and binding.key is None and whole not in self.req.values:
                # scattered through the store: read only element i (unless the list was
                # passed by value and an orchestrator stored it whole, :mod:`.passing`)
                with contextlib.suppress(st.StoreError):
                    return self._read(st.element_key(self.req.run_id, src, instance))
            return self._whole(src, binding.key)[instance]
        if isinstance(binding, Collect):
            n = self.instance_count_of(binding.stage)
            return [self._instance_value(binding.stage, i) for i in range(n)]
        raise TypeError(f"unknown binding {binding!r}")

    def instance_count_of(self, stage: str) -> int:
        if self._inside(stage):
            return sum(1 for s, i in self.values if s == stage and i is not None)
        return self._count(stage)

    def mapped_count(self, spec: StageSpec) -> int:
        """How many instances a mapped stage runs inside an unbundled unit (all the
        lengths it maps over agree: :func:`~wisefuse_plugins.plan.lower.agreed_count`)."""
        return agreed_count(f"stage {spec.id!r}", spec.bindings, self._items)

    def _items(self, b: Item) -> int:
        """How many elements item binding ``b`` maps over."""
        if self._inside(b.stage):
            if self._mapped(b.stage):
                return self.instance_count_of(b.stage)
            return len(self._whole(b.stage, b.key))
        keyed = b.key is not None and b.stage not in self.spec.mapped_upstream
        return len(self._whole(b.stage, b.key)) if keyed else self._count(b.stage)

    # -- running ------------------------------------------------------------------------

    def run_stage(self, spec: StageSpec, instance: int | None) -> None:
        with self.logs.stage(spec.id, instance):
            self._run_stage(spec, instance)

    def _run_stage(self, spec: StageSpec, instance: int | None) -> None:
        start = time.perf_counter()
        exported = spec.id in self.spec.exports
        key = st.output_key(self.req.run_id, spec.id, instance)
        resumed = False
        fn_ms = 0.0
        fn_window: tuple[float, float] | None = None
        try:
            if exported and self.req.resume and self.store.exists(key):
                value, resumed = st.get(self.store, key), True  # a retry: keep what is stored
            else:
                kwargs = {p: self.resolve(b, instance) for p, b in spec.bindings.items()}
                fn_start = time.perf_counter()
                value = self.dep.functions[spec.id](**kwargs)
                fn_end = time.perf_counter()
                fn_ms = (fn_end - fn_start) * 1000
                fn_window = (fn_start, fn_end)
            self.values[spec.id, instance] = value
            if exported:
                self._export(spec, instance, key, value)
        except BaseException as err:
            raise StageFailed(spec.id, instance, err) from err
        ms = (time.perf_counter() - start) * 1000
        record = {
            "stage": spec.id,
            "instance": instance,
            "ms": round(ms, 3),
            "fn_ms": round(fn_ms, 3),
            "resumed": resumed,
        }
        if fn_window is not None:  # CLOCK_MONOTONIC: the local backend converts the window
            record["fn_t"] = [round(fn_window[0], 6), round(fn_window[1], 6)]
        with self._record_lock:
            self.timings.append(record)

    def _by_value(self, size: int) -> bool:
        """Whether an output of ``size`` pickled bytes goes back in the response (and
        takes its share of :data:`passing.RESPONSE_BYTES`)."""
        if not self.req.by_value or size > self.req.by_value:
            return False
        with self._record_lock:
            if self._by_value_left < size:
                return False
            self._by_value_left -= size
            return True

    def _export(self, spec: StageSpec, instance: int | None, key: str, value: Any) -> None:
        what = f"stage {spec.id!r}" + ("" if instance is None else f" instance {instance}")
        data = st.dumps(value, what)
        record: dict[str, Any] = {"stage": spec.id, "instance": instance, "key": key}
        if self._by_value(len(data)):  # the orchestrator passes it on; nothing stored
            record.update(bytes=len(data), written=False, pickle=passing.encode(data))
        else:
            record.update(bytes=len(data), written=self.store.put_bytes(key, data))
        if spec.id in self.spec.scatter:
            try:
                items = list(value)
            except TypeError as err:
                raise TypeError(
                    f"{what} is mapped over downstream but returned {type(value).__name__}, not a list"
                ) from err
            if "pickle" not in record:  # by value, the readers take the list whole
                for i, item in enumerate(items):
                    st.put(
                        self.store,
                        st.element_key(self.req.run_id, spec.id, i),
                        item,
                        f"{what} element {i}",
                    )
            record["count"] = len(items)
        elif isinstance(value, list | tuple):
            record["count"] = len(value)
        elif isinstance(value, dict):  # others may map over a list inside it (Item with a key)
            lists = {
                k: len(v)
                for k, v in value.items()
                if isinstance(k, str) and isinstance(v, list | tuple)
            }
            if lists:
                record["key_counts"] = lists
        with self._record_lock:
            self.outputs.append(record)
            self.outputs[-1]["_value"] = value

    def _pool_run(self, jobs: list[Callable[[], None]]) -> None:
        if self.threads <= 1 or len(jobs) <= 1:
            for job in jobs:
                job()
            return
        with ThreadPoolExecutor(max_workers=min(self.threads, len(jobs))) as pool:
            futures = [pool.submit(job) for job in jobs]
            _, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for f in pending:
                f.cancel()
            for f in futures:
                if f.done() and not f.cancelled() and f.exception() is not None:
                    raise f.exception()  # type: ignore[misc]

    def run(self) -> None:
        stages = self.spec.stages
        if self.spec.bundled:

            def chain(i: int) -> Callable[[], None]:
                return lambda: [self.run_stage(s, i) for s in stages]

            self._pool_run([chain(i) for i in self.req.instances or []])
            return
        for s in stages:
            if s.mapped:
                n = self.mapped_count(s)
                self._pool_run([lambda s=s, i=i: self.run_stage(s, i) for i in range(n)])
            else:
                self.run_stage(s, None)


def _inline(outputs: list[dict[str, Any]], budget: int) -> list[dict[str, Any]]:
    """Attach small JSON values inline, within ``budget`` bytes in all.

    A value whose pickle is over twice the budget is not even tried: its JSON would not
    fit either (JSON spells a float in ~18 characters where pickle takes 9), and encoding
    it only to throw the text away cost ~20 ms per invocation for 200 KB of floats at
    full speed, 3.5x that at 512 MB; below that, :func:`_json_size` stops at the budget.
    """
    result = []
    for rec in outputs:
        rec = dict(rec)
        value = rec.pop("_value", None)
        if budget > 0 and rec.get("bytes", 0) <= 2 * budget:
            size = _json_size(value, budget)
            if size is not None:
                rec["value"] = value
                budget -= size
        result.append(rec)
    return result


def _json_size(value: Any, limit: int) -> int | None:
    """Length of ``value`` as JSON when it is JSON and at most ``limit``, else ``None``.

    A list is encoded a slice at a time, a dict item by item (C encoder), and given up on
    past ``limit``:
    6,000 floats in a list (54 KB pickled, 110 KB of JSON) cost ~5 ms to encode whole,
    17 ms at 512 MB, for nothing.
    """
    try:
        if isinstance(value, list | tuple):
            size, step = 2 + max(len(value) - 1, 0) * 2, 64  # [ ], ", " between items
            for start in range(0, len(value), step):  # slices: C speed, few calls
                part = json.dumps(value[start : start + step], allow_nan=False)
                size += len(part) - 2 - max(len(value[start : start + step]) - 1, 0) * 2
                if size > limit:
                    return None
            return size
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            size = 2 + max(len(value) - 1, 0) * 2
            for key, item in value.items():
                size += len(json.dumps(key)) + 2 + len(json.dumps(item, allow_nan=False))
                if size > limit:
                    return None
            return size
        size = len(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError):
        return None
    return size if size <= limit else None


def _memory_mb(context: Any) -> float:
    try:
        return float(getattr(context, "memory_limit_in_mb", 1769))
    except (TypeError, ValueError):
        return 1769.0


def run_unit(
    dep: LoadedUnit, event: Any, memory_mb: float, logs: capture.Capture | None = None
) -> dict[str, Any]:
    """Run one event against a loaded unit (the handler's body, callable in-process).

    ``logs``: the capture the handler opened (it saw the cold start's imports); without it,
    one for this call, as the event's ``log_bytes`` asks.
    """
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if logs is None:
            logs = stack.enter_context(capture.capturing(log_budget(event)))
        response = _run_unit(dep, event, memory_mb, logs, start)
        if logs.limit:
            response["logs"] = logs.close()
    return response


def _run_unit(
    dep: LoadedUnit, event: Any, memory_mb: float, logs: capture.Capture, start: float
) -> dict[str, Any]:
    try:
        req = parse_event(event, dep.spec)
    except Exception as err:
        return {"ok": False, "error": StageFailed("<event>", None, err).info}
    inv = Invocation(dep, req, threads=bundle_threads(memory_mb), logs=logs)
    try:
        inv.run()
        counted = _chunks(inv) if dep.spec.bundles else None
    except StageFailed as failed:
        return {"ok": False, "error": failed.info, "timings": inv.timings}
    except Exception as err:
        return {"ok": False, "error": StageFailed("<unit>", None, err).info, "timings": inv.timings}
    budget = int(os.environ.get(ENV_INLINE, DEFAULT_INLINE_BYTES))
    response = {
        "ok": True,
        "unit": dep.spec.unit,
        "run_id": req.run_id,
        "outputs": _inline(inv.outputs, budget),
        "timings": inv.timings,
        "threads": inv.threads,
        "store": {"gets": inv.store.gets, "puts": inv.store.puts},
        "handler_ms": round((time.perf_counter() - start) * 1000, 3),
    }
    if counted is not None:
        response["chunks"] = counted
    return response


def _chunks(inv: Invocation) -> dict[str, list[list[int]]]:
    """Instance chunks of the bundled units downstream that this unit can count."""
    found = {}
    for b in inv.spec.bundles:
        n = (
            inv.instance_count_of(b.stage)
            if inv._mapped(b.stage)
            else len(inv._whole(b.stage, b.key))
        )
        found[b.slot] = chunks(n, b.size)
    return found


def handler(event: Any, context: Any) -> dict[str, Any]:
    """The Lambda entry point. Reports task errors, or raises them if ``raise_errors``."""
    # the execution environment is the function's: lines of its threads count too
    with capture.capturing(log_budget(event), exclusive=True) as logs:
        try:
            with logs.stage("<setup>"):  # a cold start imports the user's files
                dep = loaded_unit()
        except Exception as err:
            result: dict[str, Any] = {"ok": False, "error": StageFailed("<setup>", None, err).info}
            if logs.limit:
                result["logs"] = logs.close()
        else:
            result = run_unit(dep, event, _memory_mb(context), logs)
    if not result["ok"] and isinstance(event, dict) and event.get("raise_errors") is True:
        raise WiseFuseUnitFailed(result["error"])
    return result
