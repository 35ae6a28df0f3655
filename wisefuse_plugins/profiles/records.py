"""What the profile archive records: one measured run of a stage instance (:class:`Sample`),
and a setting that could not run (:class:`FailureRecord`).

Plain dataclasses, checked on construction, so the profiler, the importers and the
providers build them without touching SQL (:mod:`wisefuse_plugins.profiles.archive`
stores them).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: Where samples come from (the ``source`` column).
SOURCES = ("profiler", "lambda-report", "airflow", "prefect")
#: Code hash recorded for opaque stages (no Python callable to hash).
OPAQUE_HASH = ""


def now() -> datetime:
    """The time in UTC: what a record is stamped with by default."""
    return datetime.now(UTC)


def utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes: they were stored as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class Sample:
    """One run of one stage instance, as measured.

    ``duration_ms`` is the function alone, Lambda-equivalent where the source allows it
    (profiler, Lambda REPORT lines); importers from Airflow and Prefect record the task's
    run time under their worker (see ``docs/profiles.md``). ``init_ms`` is the cold start
    of the execution environment when ``cold``. ``peak_memory_mb`` is the invocation's
    (shared by the instances of a bundle). ``ref`` names the sample at its origin (a
    Lambda request id, an Airflow task instance, a Prefect task run): importing the same
    history twice records it once.
    """

    workflow: str
    stage: str
    code_hash: str
    memory_mb: int
    duration_ms: float
    arch: str = "x86_64"
    bundle_size: int = 1
    backend: str = "local"
    instance: int | None = None
    init_ms: float | None = None
    cold: bool = False
    input_bytes: int | None = None
    output_bytes: int | None = None
    peak_memory_mb: float | None = None
    timestamp: datetime = field(default_factory=now)
    source: str = "profiler"
    ref: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.memory_mb, int) or self.memory_mb <= 0:
            raise ValueError(f"memory_mb must be a positive integer, got {self.memory_mb!r}")
        if not isinstance(self.bundle_size, int) or self.bundle_size < 1:
            raise ValueError(f"bundle_size must be >= 1, got {self.bundle_size!r}")
        if not math.isfinite(self.duration_ms) or self.duration_ms < 0:
            raise ValueError(f"duration_ms must be finite and >= 0, got {self.duration_ms!r}")

    def row(self) -> dict[str, Any]:
        row = dataclasses.asdict(self)
        row["timestamp"] = utc(self.timestamp)
        return row

    @classmethod
    def from_row(cls, row: Any) -> Sample:
        data = {f.name: getattr(row, f.name) for f in dataclasses.fields(cls)}
        data["timestamp"] = utc(data["timestamp"])
        data["cold"] = bool(data["cold"])
        return cls(**data)


@dataclass(frozen=True)
class FailureRecord:
    """A setting that could not run: out of memory, timeout, crash (kept to skip it next time)."""

    workflow: str
    stage: str
    code_hash: str
    memory_mb: int
    arch: str
    bundle_size: int
    backend: str
    kind: str
    message: str
    timestamp: datetime = field(default_factory=now)
