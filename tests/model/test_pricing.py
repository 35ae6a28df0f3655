"""Pricing and limits against bills computed by hand."""

from __future__ import annotations

import dataclasses

import pytest

from wisefuse_plugins.plan import limits, pricing
from wisefuse_plugins.plan.pricing import DEFAULT


def test_table_is_data_with_provenance() -> None:
    assert DEFAULT.region == "us-east-1" and DEFAULT.as_of and DEFAULT.source.startswith("https://")
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT.lambda_per_request = 0.0  # type: ignore[misc]
    assert DEFAULT.lambda_gb_s("x86_64") == 0.0000166667
    assert DEFAULT.lambda_gb_s("arm64") == 0.0000133334
    with pytest.raises(ValueError, match="arch"):
        DEFAULT.lambda_gb_s("sparc")


def test_lambda_bill_one_second_at_1gb() -> None:
    # 1 s at 1024 MB = 1 GB-s: $0.0000166667 + one request $0.0000002
    assert pricing.lambda_cost(1000, 1024) == pytest.approx(0.0000168667, abs=1e-15)
    assert pricing.lambda_cost(1000, 1024, "arm64") == pytest.approx(0.0000135334, abs=1e-15)


def test_lambda_bill_per_ms_and_memory() -> None:
    # 123 ms at 128 MB: 0.123 s * 0.125 GB * 0.0000166667 = 2.5625e-7, + 2e-7 request
    assert pricing.lambda_duration_cost(123, 128) == pytest.approx(2.56250512e-7, rel=1e-9)
    assert pricing.lambda_cost(123, 128) == pytest.approx(4.56250512e-7, rel=1e-9)
    # a million 100 ms invocations at 512 MB: 50,000 GB-s -> $0.833335 + $0.20
    assert pricing.lambda_cost(100 * 10**6, 512, requests=10**6) == pytest.approx(1.033335)
    # the largest function, 900 s at 10,240 MB: 9,000 GB-s -> $0.150000 + request
    assert pricing.lambda_cost(900_000, 10_240) == pytest.approx(0.1500003 + 0.0000002)


def test_billed_duration_rounds_each_phase_up_and_bills_init() -> None:
    assert pricing.billed_ms(0.2) == 1
    assert pricing.billed_ms(12.0) == 12
    assert pricing.billed_ms(12.01) == 13
    assert pricing.billed_ms(12.01, init_ms=250.3) == 13 + 251
    no_init = dataclasses.replace(DEFAULT, lambda_bills_init=False)
    assert pricing.billed_ms(12.01, init_ms=250.3, pricing=no_init) == 13


def test_step_functions_and_s3() -> None:
    assert pricing.sfn_standard_cost(1000) == pytest.approx(0.025)
    assert pricing.sfn_standard_cost(7) == pytest.approx(0.000175)
    # Express: 1 request, 250 ms -> 300 ms billed, 64 MB -> 0.0625 GB
    assert pricing.sfn_express_cost(250) == pytest.approx(1e-6 + 0.3 * 0.0625 * 0.00001667)
    # 100 MB rounds up to two 64 MB chunks
    assert pricing.sfn_express_cost(1000, memory_mb=100, requests=2) == pytest.approx(
        2 * (1e-6 + 1.0 * 0.125 * 0.00001667)
    )
    assert pricing.s3_cost(puts=1000, gets=1000) == pytest.approx(0.005 + 0.0004)
    assert pricing.s3_cost(gets=1) == pytest.approx(4e-7)


def test_limits() -> None:
    assert limits.vcpus(1769) == 1.0
    assert limits.vcpus(128) == pytest.approx(0.07236, abs=1e-5)
    assert limits.vcpus(3538) == 2.0
    # linear to the largest size (AWS rounds this to "up to 6 vCPUs"); the cap of 6 binds
    # only above 10,614 MB, which Lambda does not offer
    assert limits.vcpus(10_240) == pytest.approx(5.7886, abs=1e-4)
    assert limits.vcpus(20_000) == 6.0
    assert limits.MAX_TIMEOUT_S == 900 and limits.MIN_MEMORY_MB == 128
    assert limits.MAX_MEMORY_MB == 10_240
    assert limits.MAX_SYNC_REQUEST_BYTES == 6 * 2**20 and limits.MAX_ASYNC_REQUEST_BYTES == 2**20
    for bad in (127, 10_241, 512.5, True):
        with pytest.raises(ValueError, match="memory_mb"):
            limits.check_memory(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        limits.check_timeout(901)
    assert limits.check_arch("arm64") == "arm64"
