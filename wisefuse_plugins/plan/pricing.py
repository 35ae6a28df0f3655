"""Prices of the AWS services a plan uses, as data, and the bills they produce.

The table is one frozen :class:`Pricing` value so a study can pin, compare or swap
prices (another region, a future price change) without touching the model. Only the
first volume tier of each price is kept: a plan's cost per run is what the optimizer
compares, and the tiers only matter beyond billions of GB-seconds a month.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from wisefuse_plugins.plan.limits import check_arch

GB_MB = 1024  # Lambda bills memory in GB of 1,024 MB


@dataclass(frozen=True)
class Pricing:
    """Unit prices in USD for one region at one date."""

    region: str
    as_of: str
    source: str
    lambda_gb_s_x86_64: float
    lambda_gb_s_arm64: float
    lambda_per_request: float
    lambda_billing_granularity_ms: int
    lambda_bills_init: bool
    sfn_standard_per_transition: float
    sfn_express_per_request: float
    sfn_express_gb_s: float
    sfn_express_granularity_ms: int
    sfn_express_memory_chunk_mb: int
    s3_put: float
    s3_get: float

    def lambda_gb_s(self, arch: str) -> float:
        """Price of one GB-second of Lambda compute on ``arch``."""
        return getattr(self, f"lambda_gb_s_{check_arch(arch)}")


DEFAULT = Pricing(
    region="us-east-1",
    as_of="2025-08-01",
    source=(
        "https://aws.amazon.com/lambda/pricing/ ; https://aws.amazon.com/step-functions/pricing/ ;"
        " https://aws.amazon.com/s3/pricing/ (INIT billed for on-demand functions since 2025-08-01)"
    ),
    lambda_gb_s_x86_64=0.0000166667,
    lambda_gb_s_arm64=0.0000133334,
    lambda_per_request=0.20 / 1_000_000,
    lambda_billing_granularity_ms=1,
    lambda_bills_init=True,
    sfn_standard_per_transition=0.025 / 1_000,
    sfn_express_per_request=1.00 / 1_000_000,
    sfn_express_gb_s=0.00001667,
    sfn_express_granularity_ms=100,
    sfn_express_memory_chunk_mb=64,
    s3_put=0.005 / 1_000,
    s3_get=0.0004 / 1_000,
)


def billed_ms(duration_ms: float, init_ms: float | None = None, pricing: Pricing = DEFAULT) -> int:
    """Billed duration: each phase rounded up to the billing granularity, INIT included."""
    g = pricing.lambda_billing_granularity_ms
    billed = math.ceil(max(duration_ms, 0.0) / g) * g
    if init_ms is not None and pricing.lambda_bills_init:
        billed += math.ceil(max(init_ms, 0.0) / g) * g
    return billed


def lambda_duration_cost(
    billed_duration_ms: float, memory_mb: int, arch: str = "x86_64", pricing: Pricing = DEFAULT
) -> float:
    """Compute charge of ``billed_duration_ms`` at ``memory_mb`` (no request charge)."""
    rate = pricing.lambda_gb_s(arch)
    return billed_duration_ms / 1000.0 * memory_mb / GB_MB * rate


def lambda_cost(
    billed_duration_ms: float,
    memory_mb: int,
    arch: str = "x86_64",
    pricing: Pricing = DEFAULT,
    requests: int = 1,
) -> float:
    """Bill of ``requests`` invocation(s) totalling ``billed_duration_ms``: compute + requests."""
    return (
        lambda_duration_cost(billed_duration_ms, memory_mb, arch, pricing)
        + requests * pricing.lambda_per_request
    )


def sfn_standard_cost(transitions: int, pricing: Pricing = DEFAULT) -> float:
    """Step Functions Standard: per state transition (retries count too)."""
    return transitions * pricing.sfn_standard_per_transition


def sfn_express_cost(
    duration_ms: float, memory_mb: float = 64, requests: int = 1, pricing: Pricing = DEFAULT
) -> float:
    """Step Functions Express: per request plus duration, per 100 ms and per 64 MB chunk."""
    g = pricing.sfn_express_granularity_ms
    chunk = pricing.sfn_express_memory_chunk_mb
    billed_s = math.ceil(max(duration_ms, 0.0) / g) * g / 1000.0
    billed_gb = max(1, math.ceil(memory_mb / chunk)) * chunk / GB_MB
    return requests * (
        pricing.sfn_express_per_request + billed_s * billed_gb * pricing.sfn_express_gb_s
    )


def s3_cost(puts: int = 0, gets: int = 0, pricing: Pricing = DEFAULT) -> float:
    """S3 request charges (storage and transfer inside a region are left out)."""
    return puts * pricing.s3_put + gets * pricing.s3_get
