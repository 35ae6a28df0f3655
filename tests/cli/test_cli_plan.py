"""`wisefuse profile` then `wisefuse optimize` on a small IR file, with real workers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from wisefuse_plugins.ir import load
from wisefuse_plugins.plan.schema import check_plan, load_plan
from wisefuse_plugins.targets import load_workflow

TOY = Path(__file__).resolve().parents[1] / "runtime" / "toy" / "toy.ir.json"


def wisefuse(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("wisefuse")
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, check=False, cwd=cwd, timeout=600
    )


def test_relative_code_root_is_relative_to_the_ir_file():
    assert load(TOY).source.root == "."
    assert Path(load_workflow(TOY).source.root) == TOY.parent


def test_profile_then_optimize_writes_a_valid_plan_and_plot(tmp_path):
    db = f"sqlite:///{tmp_path / 'profiles.sqlite'}"
    env_args = ("--db", db)
    prof = wisefuse(
        "profile", str(TOY), "--memory", "512,1769", "--runs", "2", *env_args, cwd=tmp_path
    )
    assert prof.returncode == 0, prof.stderr
    assert "recorded" in prof.stdout and "square" in prof.stdout
    again = wisefuse(
        "profile", str(TOY), "--memory", "512,1769", "--runs", "2", *env_args, cwd=tmp_path
    )
    assert "recorded 0 samples" in " ".join(
        again.stdout.split()
    )  # resumable: nothing new to measure
    opt = wisefuse(
        "optimize",
        str(TOY),
        "--slo",
        "2x",
        "--out",
        "plan.json",
        "--plot",
        "frontier.png",
        *env_args,
        cwd=tmp_path,
    )
    assert opt.returncode == 0, opt.stderr
    for text in ("wisefuse", "user-min", "user-max", "plan written to"):
        assert text in opt.stdout
    plan = load_plan(tmp_path / "plan.json")
    check_plan(plan, load_workflow(TOY))
    assert plan.meta["planner"] == "wisefuse" and plan.meta["slo_s"] > 0
    assert (tmp_path / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rep = wisefuse(
        "report",
        str(TOY),
        "plan.json",
        "--runs",
        "2",
        "--out",
        "report.md",
        *env_args,
        cwd=tmp_path,
    )
    assert rep.returncode == 0, rep.stderr
    page = (tmp_path / "report.md").read_text()
    for text in (
        "predicted vs measured (2 runs",
        "P95 latency (s)",
        "cost per 1,000 runs",
        "report-latency.png",
    ):
        assert text in page
    assert (tmp_path / "report-units.png").exists()
    tuned = wisefuse(
        "optimize", str(TOY), "--slo", "2x", "--feedback", "3", "--out", "tuned.json",
        *env_args, cwd=tmp_path,
    )  # fmt: skip
    assert tuned.returncode == 0, tuned.stderr
    assert "feedback 1:" in tuned.stdout and "measured" in tuned.stdout
    plan = load_plan(tmp_path / "tuned.json")
    check_plan(plan, load_workflow(TOY))
    assert 1 <= plan.meta["feedback_rounds"] <= 3 and plan.meta["measured_p95_s"] > 0
    # the relative SLO is of User-Max's P95 as run, not as predicted
    found = re.search(
        r"User-Max measured P95 ([0-9.]+) s in 3 runs .*: SLO 2x = ([0-9.]+) s", tuned.stdout
    )
    assert found, tuned.stdout
    ref, slo_s = map(float, found.groups())
    assert slo_s == pytest.approx(2 * ref, rel=0.02, abs=0.002)
    # warm runs (runtime.measure.WARM_WORKERS): with the backend's default of 4 workers, the
    # 5 functions of User-Max's plan evicted each other and every run paid a ~1 s cold start
    assert ref < 0.5, tuned.stdout
    assert plan.meta["slo_s"] == pytest.approx(slo_s, rel=0.02, abs=0.002)
    assert "earlier --feedback" not in opt.stdout + tuned.stdout
    # what the feedback runs measured stays in the archive for the next plan of this code
    later = wisefuse(
        "optimize", str(TOY), "--slo", "2x", "--out", "later.json", *env_args, cwd=tmp_path
    )
    assert later.returncode == 0, later.stderr
    units = re.search(r"measured times of (\d+) units from earlier --feedback runs", later.stdout)
    assert units and int(units.group(1)) >= len(plan.units), later.stdout


def test_optimize_without_profiles_is_one_clear_error(tmp_path):
    opt = wisefuse(
        "optimize", str(TOY), "--db", f"sqlite:///{tmp_path / 'empty.sqlite'}", cwd=tmp_path
    )
    assert opt.returncode == 2
    assert opt.stderr.startswith("error: no profile for stage")
    assert "wisefuse profile" in opt.stderr and "Traceback" not in opt.stderr


def test_feedback_needs_the_local_backend(tmp_path):
    opt = wisefuse("optimize", str(TOY), "--feedback", "3", "--backend", "aws", cwd=tmp_path)
    assert opt.returncode == 2
    assert "--feedback runs plans on the local Lambda" in opt.stderr
    assert "--backend local" in opt.stderr and "Traceback" not in opt.stderr


def test_optimize_headroom_default_is_the_optimizers():
    import inspect

    from wisefuse_plugins.cli import planning
    from wisefuse_plugins.optimizer.feedback import tune
    from wisefuse_plugins.optimizer.search import SLO_HEADROOM

    default = inspect.signature(planning.optimize).parameters["headroom"].default
    assert default == SLO_HEADROOM
    assert inspect.signature(tune).parameters["headroom"].default == SLO_HEADROOM
