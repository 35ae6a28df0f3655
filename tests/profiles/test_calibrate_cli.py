"""Calibration of the local platform, and the ``wisefuse profile`` command."""

from __future__ import annotations

import pytest

from wisefuse_plugins.cli import main
from wisefuse_plugins.ir import dump
from wisefuse_plugins.profiles import Archive, calibrate_local, load_platform
from wisefuse_plugins.runtime.backends.local import LocalLambda
from wisefuse_plugins.runtime.store import LocalStore

from ..runtime.toyflows import ROOT, toy_workflow


def test_calibration_measures_and_persists(tmp_path):
    store = LocalStore(tmp_path / "store")
    with (
        LocalLambda(keep_alive_s=30) as lam,
        Archive(f"sqlite:///{tmp_path / 'p.sqlite'}") as archive,
    ):
        platform = calibrate_local(store, lam, archive=archive, repeats=5)
        assert load_platform("local", archive) == platform
    assert platform.name == "local" and platform.bill_store_requests
    assert 0 <= platform.store_latency_ms < 1000
    assert platform.store_bandwidth_mb_s > 1
    assert 0 <= platform.invoke_overhead_ms < 1000 and 0 <= platform.orchestration_ms < 1000
    # measured in workers at 512 and 1769 MB, split into a fixed part and CPU (which a
    # small share slows); tiny durations under a CPU quota are noisy, so only ranges here
    # (benchmarks/model_accuracy.py shows what they are worth)
    assert platform.put_latency_ms is not None and 0 <= platform.put_latency_ms < 1000
    assert 0 <= platform.store_cpu_ms < 1000 and 0 <= platform.invoke_cpu_ms < 1000
    assert platform.invoke_overhead_ms + platform.invoke_cpu_ms > 0
    assert platform.orchestration_usd_per_step == 0.0
    assert store.list("") == []  # the calibration cleans up after itself


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out = capsys.readouterr()
    return info.value.code or 0, out.out, out.err


def test_profile_command_measures_then_resumes(capsys, tmp_path):
    ir = dump(toy_workflow(n=3), tmp_path / "toy.ir.json")
    db = f"sqlite:///{tmp_path / 'p.sqlite'}"
    args = ["profile", str(ir), "--memory", "512,1769", "--bundle", "1,2", "--runs", "2"]
    args += ["--db", db, "--code-root", str(ROOT), "--no-calibrate"]
    code, out, err = run(capsys, *args)
    assert code == 0, err
    for text in ("512 MB", "1769 MB", "make", "square", "middle", "total", "P50 / P95"):
        assert text in out
    assert "already measured" in out and "recorded 0 samples" not in out
    code, out, _ = run(capsys, *args)
    assert code == 0 and "recorded 0 samples from 0 invocations" in out
    with Archive(db) as archive:
        assert {s.stage for s in archive.samples("toy")} == {
            "make",
            "square",
            "middle",
            "config",
            "total",
        }


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--memory", "512,lots"], "--memory wants positive integers"),
        (["--bundle", "0"], "--bundle wants positive integers"),
        (["--backend", "aws"], "backend 'aws' cannot profile yet"),
        (["--runs", "0"], "--runs and --max-instances must be at least 1"),
    ],
)
def test_profile_command_errors_are_one_line(capsys, tmp_path, extra, message):
    code, out, err = run(capsys, "profile", str(tmp_path / "missing.ir.json"), *extra)
    assert code == 2 and message in err and "Traceback" not in err + out


def test_profile_command_missing_target(capsys, tmp_path):
    code, _, err = run(
        capsys, "profile", str(tmp_path / "missing.py"), "--db", f"sqlite:///{tmp_path}/p.sqlite"
    )
    assert code == 2 and "does not exist" in err
