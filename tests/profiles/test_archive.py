"""The profile archive: round trip, schema version, code-hash filtering, concurrent writers."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select, update

from wisefuse_plugins.ir import Const, Stage, Workflow, callable_ref
from wisefuse_plugins.model.predict import Model, ModelError
from wisefuse_plugins.model.profile import Platform
from wisefuse_plugins.plan.schema import single_stage_plan
from wisefuse_plugins.profiles import Archive, ArchiveError, Sample, default_url, profiles_for
from wisefuse_plugins.profiles.tables import SCHEMA_VERSION, meta_table

from ..conftest import load_module_from_path


def url(path: Path) -> str:
    return f"sqlite:///{path}"


def sample(
    stage: str = "s", code_hash: str = "h1", memory_mb: int = 512, ms: float = 10.0, **kw
) -> Sample:
    return Sample(
        workflow="wf", stage=stage, code_hash=code_hash, memory_mb=memory_mb, duration_ms=ms, **kw
    )


def test_round_trip_keeps_every_field(tmp_path):
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    original = sample(
        arch="arm64", bundle_size=3, backend="aws", instance=2, init_ms=250.5, cold=True,
        input_bytes=10, output_bytes=2**40, peak_memory_mb=88.0, timestamp=when,
        source="lambda-report", ref="lambda:abc",
    )  # fmt: skip
    with Archive(url(tmp_path / "a.sqlite")) as archive:
        assert archive.add([original, sample(ms=11.0)]) == 2
        assert archive.add([original]) == 0  # the same ref is recorded once
        got = archive.samples("wf", backend="aws")
    assert got == [original]


def test_default_url_is_under_wisefuse_home(tmp_path, monkeypatch):
    monkeypatch.delenv("WISEFUSE_DB_URL", raising=False)
    monkeypatch.setenv("WISEFUSE_HOME", str(tmp_path / "home"))
    assert default_url() == f"sqlite:///{(tmp_path / 'home' / 'profiles.sqlite').resolve()}"
    with Archive() as archive:
        archive.add([sample()])
    assert (tmp_path / "home" / "profiles.sqlite").exists()
    monkeypatch.setenv("WISEFUSE_DB_URL", url(tmp_path / "other.sqlite"))
    with Archive() as archive:
        assert archive.samples() == []  # another database: the env variable wins


def test_second_database_is_independent(tmp_path):
    with Archive(url(tmp_path / "one.sqlite")) as one, Archive(url(tmp_path / "two.sqlite")) as two:
        one.add([sample(ms=1.0)])
        two.add([sample(ms=2.0), sample(ms=3.0)])
        assert [s.duration_ms for s in one.samples()] == [1.0]
        assert [s.duration_ms for s in two.samples()] == [2.0, 3.0]
        two.save_platform(Platform(name="local", store_latency_ms=0.5))
        assert one.load_platform("local") is None
        assert two.load_platform("local") == Platform(name="local", store_latency_ms=0.5)


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "a.sqlite"
    Archive(url(path)).close()
    with Archive(url(path)) as archive, archive.engine.begin() as conn:
        conn.execute(
            update(meta_table).where(meta_table.c.key == "schema_version").values(value="99")
        )
    with pytest.raises(ArchiveError, match="schema version 99, newer") as info:
        Archive(url(path))
    assert "upgrade" in info.value.hint


def test_schema_version_is_written_on_first_use(tmp_path):
    with Archive(url(tmp_path / "a.sqlite")) as archive, archive.engine.begin() as conn:
        assert conn.execute(select(meta_table.c.value)).scalar() == str(SCHEMA_VERSION)
        assert archive.schema_version == SCHEMA_VERSION


def test_bad_url_is_one_line_error():
    with pytest.raises(ArchiveError, match="not a database URL"):
        Archive("::nonsense::")


def two_versions(tmp_path: Path) -> tuple[Workflow, Workflow]:
    """The same one-stage workflow before and after its function changed."""
    code = tmp_path / "code"
    code.mkdir()
    src = code / "app.py"

    def version(body: str, module: str) -> Workflow:
        src.write_text(f"def f(x):\n    return {body}\n")
        fn = load_module_from_path(src, module).f
        stage = Stage(id="f", callable=callable_ref(fn, code), bindings={"x": Const(value=1)})
        return Workflow(name="wf", stages=[stage])

    return version("x + 1", "_wf_profiles_v1"), version("2 * x + 10", "_wf_profiles_v2")


def test_changed_function_never_reuses_old_samples(tmp_path):
    old, new = two_versions(tmp_path)
    old_hash, new_hash = old.stage("f").callable.code_hash, new.stage("f").callable.code_hash
    assert old_hash != new_hash
    with Archive(url(tmp_path / "a.sqlite")) as archive:
        archive.add([sample("f", old_hash, m, ms=100.0) for m in (512, 1769) for _ in range(3)])
        assert set(archive.profiles_for(old)) == {"f"}
        assert archive.profiles_for(new) == {}
        with pytest.raises(ModelError, match="no profile"):
            Model(archive.profiles_for(new)).check(new)
        archive.add([sample("f", new_hash, 512, ms=5.0)])
        prof = archive.profiles_for(new)["f"]
    assert prof.code_hash == new_hash
    assert {k: list(v) for k, v in prof.samples.items()} == {("x86_64", 512): [5.0]}


def test_profiles_feed_the_model(tmp_path):
    old, _ = two_versions(tmp_path)
    h = old.stage("f").callable.code_hash
    rows = [
        sample("f", h, m, ms=ms, output_bytes=100, peak_memory_mb=60.0)
        for m, base in ((512, 300.0), (1769, 90.0), (3538, 88.0))
        for ms in base + np.arange(5.0)
    ]
    rows.append(sample("f", h, 512, ms=900.0, cold=True, init_ms=400.0))  # cold: init, not duration
    rows.append(sample("f", h, 512, ms=1.0, bundle_size=2))  # bundles: not in StageProfile
    rows.append(sample("f", h, 512, ms=1.0, backend="airflow"))  # another backend
    with Archive(url(tmp_path / "a.sqlite")) as archive:
        archive.add(rows)
        profiles = profiles_for(old, archive=archive)
    prof = profiles["f"]
    assert sorted(prof.samples) == [("x86_64", 512), ("x86_64", 1769), ("x86_64", 3538)]
    assert list(prof.samples["x86_64", 512]) == [300.0, 301.0, 302.0, 303.0, 304.0]
    assert prof.init_ms == 400.0 and prof.output_bytes == 100 and prof.peak_memory_mb == 60.0
    prediction = Model(profiles, Platform(name="t")).predict(old, single_stage_plan(old, 512))
    assert 0.29 < prediction.p50_s < 0.4 and prediction.cost_usd > 0


def test_concurrent_writers_lose_nothing(tmp_path):
    db = url(tmp_path / "shared.sqlite")
    workers, n = 4, 150
    script = Path(__file__).with_name("writers.py")
    start_at = time.time() + 3  # every interpreter is up by then: the writes overlap
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), db, str(w), str(n), str(start_at)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(workers)
    ]
    errors = [p.communicate(timeout=180)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * workers, errors
    with Archive(db) as archive:
        assert len(archive.samples("wf")) == workers * n
        assert archive.counts("wf", backend="local", arch="x86_64") == {
            ("s", "h1", 512, 1): workers * n
        }
    mode = sqlite3.connect(tmp_path / "shared.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_failures_and_stats(tmp_path):
    from wisefuse_plugins.profiles import FailureRecord

    old, _ = two_versions(tmp_path)
    h = old.stage("f").callable.code_hash
    with Archive(url(tmp_path / "a.sqlite")) as archive:
        archive.add([sample("f", h, 512, ms=float(v)) for v in range(1, 101)])
        stats = archive.stats(old)[("f", 512, 1)]
        assert stats.count == 100 and stats.p50_ms == pytest.approx(50.5)
        assert stats.p95_ms == pytest.approx(95.05)
        archive.add_failure(
            FailureRecord("wf", "f", h, 128, "x86_64", 1, "local", "out-of-memory", "killed")
        )
        assert [f.kind for f in archive.failures("wf")] == ["out-of-memory"]
        archive.clear_failures(
            "wf", "f", memory_mb=128, bundle_size=1, backend="local", arch="x86_64"
        )
        assert archive.failures("wf") == []
        assert archive.forget("wf") == 100


def test_unit_corrections_last_as_long_as_their_code_and_profiles(tmp_path):
    """What --feedback measured is kept for later plans of the same code and samples: a
    changed function, a stage sampled again or ``forget`` drops it."""
    old, new = two_versions(tmp_path)
    h = old.stage("f").callable.code_hash
    key = (("f",), 2, "x86_64")
    with Archive(url(tmp_path / "a.sqlite")) as archive:
        archive.add([sample("f", h, 512, ms=10.0)])
        assert archive.corrections_for(old) == {}
        assert archive.save_corrections(old, {key: {512: 1.3, 1024: 0.9}}) == 2
        assert archive.save_corrections(old, {key: {512: 1.2}, (("f",), 3, "x86_64"): {}}) == 1
        assert archive.corrections_for(old) == {key: {512: 1.2, 1024: 0.9}}  # the newest wins
        assert archive.corrections_for(old, backend="aws") == {}
        assert archive.corrections_for(new) == {}  # the function changed since
        # the model takes them as it takes tune's
        model = Model(archive.profiles_for(old)).corrected(archive.corrections_for(old))
        assert model.corrections == {key: {512: 1.2, 1024: 0.9}}
        archive.add([sample("f", h, 1024, ms=7.0)])  # profiled again: they were relative
        assert archive.corrections_for(old) == {}  # to the profiles before
        archive.save_corrections(old, {key: {512: 1.1}})
        assert archive.corrections_for(old) == {key: {512: 1.1}}
        archive.forget("wf")
        assert archive.corrections_for(old) == {}
