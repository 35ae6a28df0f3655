"""Record a unit task's per-stage timings in the profile archive, when one is configured.

Runs under Airflow are profiling samples too: each stage instance a unit task ran becomes
one :class:`~wisefuse_plugins.profiles.archive.Sample`, keyed by the task instance and try
so a re-recorded run adds nothing. Recording never fails the task.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import Context

    from wisefuse_plugins.runtime.invoker import Invoked
    from wisefuse_plugins.runtime.spec import UnitSpec


def record_timings(
    log: Any,
    context: Context,
    spec: UnitSpec,
    invoked: Invoked,
    *,
    memory_mb: int,
    arch: str,
    backend: str,
    bundle_size: int,
    archive: str | bool | None,
    init_measured: bool = True,
) -> int:
    """Record one sample per stage instance in the profile archive, when one is configured.

    Configured: ``archive`` (a SQLAlchemy URL, or True for the default archive), else
    ``$WISEFUSE_DB_URL``. Samples are keyed by the Airflow task instance and try, so a
    re-recorded run adds nothing. ``init_measured`` False (a local cold start forked from
    preloaded modules) records no init time: it would leave out imports Lambda pays. A
    failure to record is logged, never fails the task.
    """
    if archive is False or (archive is None and not os.environ.get("WISEFUSE_DB_URL")):
        return 0
    try:
        from wisefuse_plugins.profiles.archive import Archive, Sample
    except ImportError as err:  # pragma: no cover - the archive ships with the package
        log.warning("no profile archive to record timings in: %s", err)
        return 0
    ti = context["ti"]
    hashes = {s.id: s.callable.code_hash for s in spec.stages}
    out_bytes = {
        (o.get("stage"), o.get("instance")): o.get("bytes")
        for o in invoked.payload.get("outputs", [])
    }
    base = f"airflow:{ti.dag_id}/{context['dag_run'].run_id}/{ti.task_id}/{ti.map_index}/{ti.try_number}"
    samples = [
        Sample(
            workflow=spec.workflow,
            stage=t["stage"],
            code_hash=hashes.get(t["stage"], ""),
            memory_mb=memory_mb,
            duration_ms=float(t.get("fn_ms", 0.0)),
            arch=arch,
            bundle_size=bundle_size,
            backend=backend,
            instance=t.get("instance"),
            init_ms=invoked.init_ms if invoked.cold and init_measured else None,
            cold=invoked.cold,
            output_bytes=out_bytes.get((t["stage"], t.get("instance"))),
            peak_memory_mb=invoked.max_memory_mb or None,
            source="airflow",
            ref=f"{base}/{t['stage']}/{t.get('instance')}",
        )
        for t in invoked.payload.get("timings", [])
        if not t.get("resumed")
    ]
    try:
        with Archive(archive if isinstance(archive, str) else None) as db:
            return db.add(samples)
    except Exception as err:
        log.warning("could not record timings in the profile archive: %s", err)
        return 0
