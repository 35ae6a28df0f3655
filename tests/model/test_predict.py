"""End-to-end predictions on hand-built workflows with synthetic profiles of known law."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from wisefuse_plugins.model.predict import Model, ModelError
from wisefuse_plugins.model.profile import Platform
from wisefuse_plugins.plan.limits import vcpus
from wisefuse_plugins.plan.lower import invocation_count
from wisefuse_plugins.plan.pricing import DEFAULT, lambda_cost
from wisefuse_plugins.plan.schema import Unit

from ..runtime.toyflows import plan, toy_workflow
from .synthetic import law_ms, profile

QUIET = Platform(
    name="test",
    store_latency_ms=10.0,
    store_bandwidth_mb_s=100.0,
    invoke_overhead_ms=0.0,
    orchestration_ms=0.0,
    orchestration_usd_per_step=0.0,
    bill_store_requests=False,
)


def toy_model(wf, platform=QUIET, cpu=None, noise=0.0, draws=2000, phi=1.0):
    cpu = cpu or {"make": 10.0, "square": 200.0, "middle": 300.0, "config": 5.0, "total": 50.0}
    profiles = {
        s.id: profile(
            s.id, s.callable.code_hash, cpu=cpu[s.id], noise=noise, seed=i, parallel_fraction=phi
        )
        for i, s in enumerate(wf.python_stages)
    }
    return Model(profiles, platform, draws=draws)


def test_series_of_constants_adds_up_with_store_hand_offs():
    wf = toy_workflow(n=5)
    m = toy_model(wf)
    p = plan(wf, [["make"], ["square"], ["middle"], ["config"], ["total"]], memory_mb=1769)
    pred = m.predict(wf, p)
    # critical path: make -> square -> middle -> total, each stage alone at 1 vCPU;
    # every unit boundary costs a PUT and a GET of 10 ms (0 bytes); total reads 5 + 1 inputs
    io = {"make": 10 + 5 * 10, "square": 10 + 10, "middle": 10 + 10, "total": 5 * 10 + 10 + 10}
    # make exports its list and scatters 5 elements: 1 + 5 PUTs in one request batch
    expected_ms = 10 + 200 + 300 + 50 + sum(io.values())
    assert pred.p50_s * 1000 == pytest.approx(expected_ms, rel=1e-6)
    assert pred.p95_s == pytest.approx(pred.p50_s)


def test_fusing_the_chain_removes_the_hand_off():
    wf = toy_workflow(n=5)
    m = toy_model(wf)
    apart = m.predict(wf, plan(wf, [["make"], ["square"], ["middle"], ["config"], ["total"]]))
    fused = m.predict(wf, plan(wf, [["make"], ["square", "middle"], ["config"], ["total"]]))
    assert apart.p50_s - fused.p50_s == pytest.approx(0.020, rel=1e-6)  # one PUT + one GET of 10 ms


def test_bundle_of_b_shares_cores():
    wf = toy_workflow(n=4)
    m = toy_model(wf)
    one = plan(
        wf, [["make"], ["square", "middle"], ["config"], ["total"]], {"square": 1}, memory_mb=3538
    )
    four = plan(
        wf, [["make"], ["square", "middle"], ["config"], ["total"]], {"square": 4}, memory_mb=3538
    )
    u1 = {u.unit: u for u in m.predict(wf, one).units}["square-middle"]
    u4 = {u.unit: u for u in m.predict(wf, four).units}["square-middle"]
    assert u1.invocations == 4 and u4.invocations == 1
    # 4 chains of 500 CPU-ms on 2 vCPUs: 1000 ms, plus each chain's GET and PUT (10 ms each) on 2 threads
    assert u4.p50_ms == pytest.approx(4 * 500 / 2 + 4 * 20 / 2, rel=1e-6)
    assert u1.p50_ms == pytest.approx(500 + 20, rel=1e-6)


@pytest.mark.parametrize(
    ("phi", "cores"),
    [(1.0, 2.0), (0.5, 1 / (0.5 + 0.5 / 2)), (0.0, 1.0), (None, 1.0), (-0.5, 1 / (1.5 - 0.25))],
)
def test_bundle_threads_share_cores_as_amdahls_law_says(phi, cores):
    """A bundle's threads get 1 / ((1 - phi) + phi / n) of n cores: the interpreter lock
    serialises the rest; a stage never profiled in a bundle is assumed to gain nothing."""
    wf = toy_workflow(n=4)
    m = toy_model(wf, phi=phi)
    four = plan(
        wf, [["make"], ["square", "middle"], ["config"], ["total"]], {"square": 4}, memory_mb=3538
    )
    u4 = {u.unit: u for u in m.predict(wf, four).units}["square-middle"]
    # 4 chains of 500 CPU-ms; their GETs and PUTs (20 ms each chain) overlap on 2 threads
    assert u4.p50_ms == pytest.approx(4 * 500 / cores + 4 * 20 / 2, rel=1e-6)


def test_the_last_bundle_bills_only_the_instances_left():
    """5 instances in bundles of 2: two full invocations and one of a single instance."""
    wf = toy_workflow(n=5)
    m = toy_model(wf)
    groups = [["make"], ["square", "middle"], ["config"], ["total"]]
    p = plan(wf, groups, {"square": 2}, memory_mb=1769)
    unit = next(u for u in p.units if u.id == "square-middle")
    assert invocation_count(wf, unit) == 3
    # one thread at 1 vCPU: a bundle of 2 runs 2 x (500 + 20) ms, the last one 520 ms
    price = lambda_cost(2 * 520, 1769, "x86_64", DEFAULT)
    last = lambda_cost(520, 1769, "x86_64", DEFAULT)
    assert m.unit_cost(wf, unit) == pytest.approx(2 * price + last, rel=1e-6)
    billed = m.with_draws(2000)
    billed.platform = dataclasses.replace(QUIET, bill_store_requests=True)
    # each instance: a GET of its element and a PUT of its output, priced as S3 requests
    s3 = 5 * (DEFAULT.s3_get + DEFAULT.s3_put)
    assert billed.unit_cost(wf, unit) == pytest.approx(2 * price + last + s3, rel=1e-6)


def test_runtime_and_request_cpu_grow_at_small_shares():
    """Per invocation and per store request, the CPU part is paid 1 / min(v, 1) times over
    and the fixed part (a PUT's fsync, a GET's latency) as it is."""
    wf = toy_workflow(n=5)
    groups = [["make"], ["square", "middle"], ["config"], ["total"]]
    p = plan(wf, groups, memory_mb=512)
    base = toy_model(wf).predict(wf, p)
    costly = dataclasses.replace(QUIET, put_latency_ms=30.0, store_cpu_ms=2.0, invoke_cpu_ms=4.0)
    m = toy_model(wf, platform=costly)
    got = {u.unit: u for u in m.predict(wf, p).units}
    before = {u.unit: u for u in base.units}
    v = vcpus(512)
    # square-middle: one GET and one PUT per invocation (an instance each)
    extra = (30.0 - 10.0) + (2 * 2.0 + 4.0) / v
    assert got["square-middle"].mean_invocation_ms == pytest.approx(
        before["square-middle"].mean_invocation_ms + extra, rel=1e-6
    )
    # make: scatters its list into 5 elements, 1 + 5 PUTs, and no GET
    extra = 6 * (30.0 - 10.0) + (6 * 2.0 + 4.0) / v
    assert got["make"].mean_invocation_ms == pytest.approx(
        before["make"].mean_invocation_ms + extra, rel=1e-6
    )


def test_cost_is_the_lambda_bill():
    wf = toy_workflow(n=5)
    m = toy_model(wf)
    p = plan(wf, [["make", "square", "middle", "config", "total"]], memory_mb=1024)
    pred = m.predict(wf, p)
    v = vcpus(1024)
    work = (
        sum(law_ms(0, c, 1024) for c in (10, 5, 50)) + 5 * (200 + 300) / v
    )  # one thread (ceil(0.58)=1)
    billed = math.ceil(work + 10)  # total is exported: one PUT
    assert pred.cost_usd == pytest.approx(lambda_cost(billed, 1024, "x86_64", DEFAULT), rel=1e-3)


def test_memory_changes_latency_by_the_law():
    wf = toy_workflow(n=1)
    m = toy_model(wf)
    p512 = m.predict(wf, plan(wf, [["make", "square", "middle", "config", "total"]], memory_mb=512))
    p700 = m.predict(
        wf, plan(wf, [["make", "square", "middle", "config", "total"]], memory_mb=700)
    )  # not profiled
    work = 10 + 200 + 300 + 5 + 50
    assert p700.p50_s * 1000 == pytest.approx(work / vcpus(700) + 10, rel=0.01)
    assert p512.p50_s > p700.p50_s


def test_max_of_many_instances_grows_with_n():
    wf8, wf64 = toy_workflow(n=8), toy_workflow(n=64)
    groups = [["make"], ["square", "middle"], ["config"], ["total"]]
    p8 = toy_model(wf8, noise=0.2).predict(wf8, plan(wf8, groups))
    p64 = toy_model(wf64, noise=0.2).predict(wf64, plan(wf64, groups))
    u8 = {u.unit: u for u in p8.units}["square-middle"]
    u64 = {u.unit: u for u in p64.units}["square-middle"]
    assert u64.p50_ms > u8.p50_ms


def test_changed_code_is_never_predicted_from_old_samples():
    wf = toy_workflow()
    m = toy_model(wf)
    m.profiles["square"].code_hash = "e" * 64
    with pytest.raises(ModelError, match="another version of its code"):
        m.predict(wf, plan(wf, [["make"], ["square"], ["middle"], ["config"], ["total"]]))
    del m.profiles["square"]
    with pytest.raises(ModelError, match="no profile for stage 'square'"):
        m.check(wf)


def test_predict_is_fast_on_small_dags():
    import time

    wf = toy_workflow()
    m = toy_model(wf, draws=1000)
    plans = [
        plan(
            wf,
            [["make"], ["square", "middle"], ["config"], ["total"]],
            {"square": b},
            memory_mb=mem,
        )
        for b in (1, 2, 5)
        for mem in (512, 1024, 1769)
    ]
    for p in plans:
        m.predict(wf, p)
    start = time.perf_counter()
    for _ in range(20):
        for p in plans:
            m.predict(wf, p)
    per_call = (time.perf_counter() - start) / (20 * len(plans))
    assert per_call < 0.005, f"{per_call * 1000:.2f} ms per prediction"
    assert np.isfinite(per_call)


def test_a_fused_chain_takes_the_sum_of_its_stages_each_on_its_own_threads():
    """A 1 ms stage that uses two threads, fused after a single-threaded 300 ms stage, must
    not make the 300 ms run on two vCPUs (the chain took its most threaded stage's threads
    for all its CPU: the demo's video chain was predicted at half its measured time)."""
    wf = toy_workflow(n=4)
    free = Platform(
        name="test", store_latency_ms=0.0, store_bandwidth_mb_s=1e9, invoke_overhead_ms=0.0,
        orchestration_ms=0.0, orchestration_usd_per_step=0.0, bill_store_requests=False,
    )  # fmt: skip
    m = toy_model(
        wf,
        platform=free,
        cpu={"make": 10.0, "square": 300.0, "middle": 1.0, "config": 5.0, "total": 50.0},
    )
    # middle: 1 ms of CPU on two threads (half the time at 2 vCPUs as at 1)
    m.profiles["middle"].samples = {
        ("x86_64", mem): np.full(40, 1.0 / min(vcpus(mem), 2)) for mem in (512, 1769, 3538)
    }
    m = Model(m.profiles, free, draws=2000)
    assert m.stage_fit("middle", "x86_64").threads == 2
    assert m.stage_fit("square", "x86_64").threads == 1
    for memory in (1769, 3538, 10240):
        fused = Unit(id="f", stages=["square", "middle"], memory_mb=memory)
        alone = [Unit(id=s, stages=[s], memory_mb=memory) for s in ("square", "middle")]
        expected = sum(m.invocation(wf, u).warm_ms for u in alone)
        assert m.invocation(wf, fused).warm_ms == pytest.approx(expected, rel=0.02), memory
    # square's 300 ms stay 300 ms on 2 vCPUs; middle's 1 ms becomes 0.5 ms
    at_two = m.invocation(wf, Unit(id="f", stages=["square", "middle"], memory_mb=3538))
    assert at_two.warm_ms == pytest.approx(300.5, rel=0.02)
