"""The profile archive: every measured sample, keyed by the code it measured.

:class:`Archive` holds the queries. One ``samples`` table holds what the profiler and the
importers measured (:class:`~wisefuse_plugins.profiles.records.Sample`), one row per stage
instance run, keyed by (workflow, stage, code_hash, memory_mb, arch, bundle_size, backend)
(:mod:`.tables`). The model never reads rows directly: :meth:`Archive.profiles_for`
queries the rows of a workflow's *current* code, so a changed function (new code hash)
never reuses old samples, and hands them to :mod:`wisefuse_plugins.model.samples`, which
turns them into :class:`~wisefuse_plugins.model.profile.StageProfile` s.

Where it lives and how concurrent writers share it (WAL, ``BEGIN IMMEDIATE``, retries):
:mod:`.connection`. See ``docs/profiles.md`` for the schema.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import delete, func, insert, inspect, select, tuple_

from wisefuse_plugins.ir import Workflow
from wisefuse_plugins.model.profile import Platform, StageProfile
from wisefuse_plugins.model.samples import Stats, setting_stats, stage_profiles
from wisefuse_plugins.profiles.connection import (
    ArchiveError,
    default_url,
    open_archive_engine,
    retry,
    shown_url,
)
from wisefuse_plugins.profiles.records import OPAQUE_HASH, FailureRecord, Sample, now, utc
from wisefuse_plugins.profiles.tables import (
    SCHEMA_VERSION,
    corrections_table,
    failures_table,
    meta_table,
    metadata,
    platforms_table,
    samples_table,
)

if TYPE_CHECKING:
    from wisefuse_plugins.model.state import Corrections

__all__ = [
    "Archive",
    "ArchiveError",
    "FailureRecord",
    "Sample",
    "Stats",
    "open_archive",
    "profiles_for",
]

T = TypeVar("T")


class Archive:
    """Samples, failures and platform constants in one SQL database (SQLAlchemy Core).

    Opening creates the tables on first use and checks the schema version; an archive
    written by a newer wisefuse is refused with :class:`ArchiveError`. Thread- and
    process-safe for writers. Use as a context manager or call :meth:`close`.
    """

    def __init__(self, url: str | None = None, *, echo: bool = False) -> None:
        self.url = url or default_url()
        self.engine = open_archive_engine(self.url, echo)
        self.schema_version = self._retry(self._init_schema, "open")
        if self.schema_version > SCHEMA_VERSION:
            self.engine.dispose()
            raise ArchiveError(
                f"the profile archive at {self._shown_url()} has schema version "
                f"{self.schema_version}, newer than this wisefuse understands ({SCHEMA_VERSION})",
                hint="upgrade wisefuse-plugins, or point WISEFUSE_DB_URL / --db at another database",
            )

    # -- plumbing ---------------------------------------------------------------------

    def _shown_url(self) -> str:
        return shown_url(self.url)

    def _init_schema(self) -> int:
        with self.engine.begin() as conn:
            if inspect(conn).has_table("meta"):
                found = conn.execute(
                    select(meta_table.c.value).where(meta_table.c.key == "schema_version")
                ).scalar()
                if found is not None and int(found) > SCHEMA_VERSION:
                    return int(found)  # refused by the caller, before touching anything
            metadata.create_all(conn)
            found = conn.execute(
                select(meta_table.c.value).where(meta_table.c.key == "schema_version")
            ).scalar()
            if found is None:
                conn.execute(
                    insert(meta_table).values(key="schema_version", value=str(SCHEMA_VERSION))
                )
                return SCHEMA_VERSION
            return int(found)

    def _retry(self, fn: Callable[[], T], what: str) -> T:
        return retry(fn, what, self.url)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- samples ----------------------------------------------------------------------

    def add(self, samples: Iterable[Sample]) -> int:
        """Record ``samples`` in one transaction; returns how many were new.

        A sample whose ``ref`` is already recorded is skipped, so re-importing the same
        history is harmless.
        """
        rows = [s.row() for s in samples]
        if not rows:
            return 0

        def write() -> int:
            with self.engine.begin() as conn:
                refs = [r["ref"] for r in rows if r["ref"] is not None]
                known: set[str] = set()
                for chunk in _chunks(refs, 500):
                    known.update(
                        conn.execute(
                            select(samples_table.c.ref).where(samples_table.c.ref.in_(chunk))
                        ).scalars()
                    )
                fresh = []
                for r in rows:
                    if r["ref"] is not None:
                        if r["ref"] in known:
                            continue
                        known.add(r["ref"])
                    fresh.append(r)
                if fresh:
                    conn.execute(insert(samples_table), fresh)
                return len(fresh)

        return self._retry(write, "record samples")

    def samples(
        self,
        workflow: str | None = None,
        *,
        stage: str | None = None,
        code_hash: str | None = None,
        backend: str | None = None,
        arch: str | None = None,
        memory_mb: int | None = None,
        bundle_size: int | None = None,
        source: str | None = None,
    ) -> list[Sample]:
        """Samples matching every given filter, oldest first."""
        c = samples_table.c
        query = select(samples_table).order_by(c.id)
        for col, value in (
            (c.workflow, workflow),
            (c.stage, stage),
            (c.code_hash, code_hash),
            (c.backend, backend),
            (c.arch, arch),
            (c.memory_mb, memory_mb),
            (c.bundle_size, bundle_size),
            (c.source, source),
        ):
            if value is not None:
                query = query.where(col == value)

        def read() -> list[Sample]:
            with self.engine.begin() as conn:
                return [Sample.from_row(r) for r in conn.execute(query)]

        return self._retry(read, "read samples")

    def counts(
        self, workflow: str, *, backend: str, arch: str
    ) -> dict[tuple[str, str, int, int], int]:
        """``(stage, code_hash, memory_mb, bundle_size) -> samples`` (what is already measured)."""
        c = samples_table.c
        query = (
            select(c.stage, c.code_hash, c.memory_mb, c.bundle_size, func.count())
            .where(c.workflow == workflow, c.backend == backend, c.arch == arch)
            .group_by(c.stage, c.code_hash, c.memory_mb, c.bundle_size)
        )

        def read() -> dict[tuple[str, str, int, int], int]:
            with self.engine.begin() as conn:
                return {(s, h, m, b): n for s, h, m, b, n in conn.execute(query)}

        return self._retry(read, "count samples")

    def _current(
        self, workflow: Workflow, backend: str, arch: str | None, stages: Sequence[str] | None
    ) -> list[Sample]:
        """The workflow's samples whose code hash is its stages' current one."""
        current = {
            sid: h for sid, h in _code_hashes(workflow).items() if stages is None or sid in stages
        }
        if not current:
            return []
        c = samples_table.c
        query = (
            select(samples_table)
            .where(
                c.workflow == workflow.name,
                c.backend == backend,
                tuple_(c.stage, c.code_hash).in_(list(current.items())),
            )
            .order_by(c.id)
        )
        if arch is not None:
            query = query.where(c.arch == arch)

        def read() -> list[Sample]:
            with self.engine.begin() as conn:
                return [Sample.from_row(r) for r in conn.execute(query)]

        return self._retry(read, "read samples")

    def profiles_for(
        self,
        workflow: Workflow,
        *,
        backend: str = "local",
        arch: str | None = "x86_64",
        stages: Sequence[str] | None = None,
    ) -> dict[str, StageProfile]:
        """The model's input: one :class:`StageProfile` per stage with current samples.

        Only samples whose code hash equals the stage's current hash count (``arch=None``:
        of every architecture); the statistics are the model's
        (:func:`wisefuse_plugins.model.samples.stage_profiles`). Stages without samples
        are absent.
        """
        return stage_profiles(self._current(workflow, backend, arch, stages))

    def stats(
        self, workflow: Workflow, *, backend: str = "local", arch: str | None = "x86_64"
    ) -> dict[tuple[str, int, int], Stats]:
        """``(stage, memory_mb, bundle_size) -> Stats`` of the current code's warm samples."""
        return setting_stats(self._current(workflow, backend, arch, None))

    def forget(self, workflow: str, *, stage: str | None = None) -> int:
        """Delete a workflow's samples and failures (one stage's with ``stage``); returns rows.
        Its unit corrections go too (those of every unit, as they hold several stages)."""

        def drop() -> int:
            n = 0
            with self.engine.begin() as conn:
                for table in (samples_table, failures_table):
                    q = delete(table).where(table.c.workflow == workflow)
                    if stage is not None:
                        q = q.where(table.c.stage == stage)
                    n += conn.execute(q).rowcount or 0
                t = corrections_table
                conn.execute(delete(t).where(t.c.workflow == workflow))
            return n

        return self._retry(drop, "delete samples")

    # -- unit corrections ---------------------------------------------------------------

    def save_corrections(
        self,
        workflow: Workflow,
        corrections: Corrections,
        *,
        backend: str = "local",
    ) -> int:
        """Keep unit corrections measured by a plan's runs (:mod:`wisefuse_plugins.model.correct`,
        ``optimizer.feedback``) under the stages' current code, for later plans of the same
        code and profiles (:meth:`corrections_for`); returns the factors written."""
        hashes = _code_hashes(workflow)
        rows = [
            {
                "workflow": workflow.name, "backend": backend, "stages": json.dumps(list(stages)),
                "code_hashes": json.dumps([hashes.get(sid, OPAQUE_HASH) for sid in stages]),
                "bundle_size": bundle, "arch": arch, "memory_mb": int(memory),
                "factor": float(factor), "timestamp": now(),
            }
            for (stages, bundle, arch), by_memory in corrections.items()
            for memory, factor in by_memory.items()
            if math.isfinite(factor) and factor > 0
        ]  # fmt: skip
        if not rows:
            return 0

        def write() -> int:
            with self.engine.begin() as conn:
                c = samples_table.c
                last = conn.execute(
                    select(func.max(c.id)).where(c.workflow == workflow.name, c.backend == backend)
                ).scalar()
                conn.execute(
                    insert(corrections_table), [{**r, "last_sample": last or 0} for r in rows]
                )
            return len(rows)

        return self._retry(write, "save corrections")

    def corrections_for(self, workflow: Workflow, *, backend: str = "local") -> Corrections:
        """The newest factor per unit and memory whose stages still have the code and the
        samples it was measured against (a stage changed or sampled since: left out)."""
        hashes = _code_hashes(workflow)

        def read() -> tuple[list[Any], dict[str, int]]:
            with self.engine.begin() as conn:
                t, c = corrections_table.c, samples_table.c
                found = list(
                    conn.execute(
                        select(corrections_table)
                        .where(t.workflow == workflow.name, t.backend == backend)
                        .order_by(t.id)
                    )
                )
                newest = dict(
                    conn.execute(
                        select(c.stage, func.max(c.id))
                        .where(c.workflow == workflow.name, c.backend == backend)
                        .group_by(c.stage)
                    ).all()
                )
            return found, newest

        found, newest = self._retry(read, "read corrections")
        out: Corrections = {}
        for r in found:  # oldest first: a newer factor replaces an older one
            stages = tuple(json.loads(r.stages))
            code = json.loads(r.code_hashes)
            if [hashes.get(sid) for sid in stages] != code:
                continue  # the code changed since
            if any(newest.get(sid, 0) > r.last_sample for sid in stages):
                continue  # profiled again since: the factor was relative to older profiles
            out.setdefault((stages, r.bundle_size, r.arch), {})[r.memory_mb] = r.factor
        return out

    # -- failures ---------------------------------------------------------------------

    def add_failure(self, failure: FailureRecord) -> None:
        row = dataclasses.asdict(failure)
        row["timestamp"] = utc(failure.timestamp)

        def write() -> None:
            with self.engine.begin() as conn:
                conn.execute(insert(failures_table).values(**row))

        self._retry(write, "record a failure")

    def failures(
        self, workflow: str, *, backend: str | None = None, arch: str | None = None
    ) -> list[FailureRecord]:
        c = failures_table.c
        query = select(failures_table).where(c.workflow == workflow).order_by(c.id)
        if backend is not None:
            query = query.where(c.backend == backend)
        if arch is not None:
            query = query.where(c.arch == arch)

        def read() -> list[FailureRecord]:
            with self.engine.begin() as conn:
                rows = conn.execute(query).mappings().all()
            return [
                FailureRecord(
                    **{k: v for k, v in r.items() if k not in ("id", "timestamp")},
                    timestamp=utc(r["timestamp"]),
                )
                for r in rows
            ]

        return self._retry(read, "read failures")

    def clear_failures(
        self,
        workflow: str,
        stage: str,
        *,
        memory_mb: int,
        bundle_size: int,
        backend: str,
        arch: str,
    ) -> None:
        c = failures_table.c

        def drop() -> None:
            with self.engine.begin() as conn:
                conn.execute(
                    delete(failures_table).where(
                        c.workflow == workflow,
                        c.stage == stage,
                        c.memory_mb == memory_mb,
                        c.bundle_size == bundle_size,
                        c.backend == backend,
                        c.arch == arch,
                    )
                )

        self._retry(drop, "clear failures")

    # -- platforms --------------------------------------------------------------------

    def save_platform(self, platform: Platform) -> None:
        """Store (replace) the constants of ``platform.name`` as JSON."""
        data = json.dumps(dataclasses.asdict(platform), sort_keys=True)

        def write() -> None:
            with self.engine.begin() as conn:
                conn.execute(delete(platforms_table).where(platforms_table.c.name == platform.name))
                conn.execute(
                    insert(platforms_table).values(name=platform.name, data=data, measured_at=now())
                )

        self._retry(write, "save the platform")

    def load_platform(self, name: str = "local") -> Platform | None:
        """The stored constants of ``name`` (fields this version does not know are dropped)."""

        def read() -> str | None:
            with self.engine.begin() as conn:
                return conn.execute(
                    select(platforms_table.c.data).where(platforms_table.c.name == name)
                ).scalar()

        text = self._retry(read, "load the platform")
        if text is None:
            return None
        known = {f.name for f in dataclasses.fields(Platform)}
        return Platform(**{k: v for k, v in json.loads(text).items() if k in known})


def _code_hashes(workflow: Workflow) -> dict[str, str]:
    """Stage id -> the stage's current code hash (:data:`OPAQUE_HASH` for opaque stages)."""
    return {
        s.id: (s.callable.code_hash if s.callable is not None else OPAQUE_HASH)
        for s in workflow.stages
    }


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def open_archive(url: str | None = None) -> Archive:
    """The archive at ``url``, ``$WISEFUSE_DB_URL`` or ``$WISEFUSE_HOME/profiles.sqlite``."""
    return Archive(url)


def profiles_for(
    workflow: Workflow,
    *,
    backend: str = "local",
    arch: str | None = "x86_64",
    archive: Archive | None = None,
) -> dict[str, StageProfile]:
    """:meth:`Archive.profiles_for` on ``archive`` or the default archive."""
    if archive is not None:
        return archive.profiles_for(workflow, backend=backend, arch=arch)
    with Archive() as own:
        return own.profiles_for(workflow, backend=backend, arch=arch)
