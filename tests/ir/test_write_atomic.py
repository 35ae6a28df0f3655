"""Writing IR and plan files: a missing parent folder is made (issue 22, item 5)."""

from __future__ import annotations

from pathlib import Path

from wisefuse_plugins.ir import dump, load
from wisefuse_plugins.ir.serde import write_atomic
from wisefuse_plugins.plan.schema import dump_plan, load_plan, single_stage_plan

from .test_validate import video_like


def test_write_atomic_makes_missing_folders(tmp_path: Path) -> None:
    path = tmp_path / "home" / "plans" / "x.plan.json"
    assert write_atomic(path, "{}\n") == path
    assert path.read_text() == "{}\n"
    assert [p.name for p in path.parent.iterdir()] == ["x.plan.json"]  # no temporary left


def test_dump_and_dump_plan_into_a_new_folder(tmp_path: Path) -> None:
    """What `wisefuse optimize --out $WISEFUSE_HOME/plans/x.plan.json` does at the end."""
    wf = video_like()
    assert load(dump(wf, tmp_path / "traces" / "wf.ir.json")) == wf
    plan = single_stage_plan(wf)
    assert load_plan(dump_plan(plan, tmp_path / "plans" / "wf.plan.json")) == plan
