"""`wisefuse optimize --out`: a path that cannot be written is refused before any work is
done (issue 22, item 5: the plan was lost after the whole optimisation)."""

from __future__ import annotations

from pathlib import Path

import pytest

from wisefuse_plugins.cli import main

TOY = Path(__file__).resolve().parents[1] / "runtime" / "toy" / "toy.ir.json"


def optimize(capsys: pytest.CaptureFixture[str], tmp_path: Path, out: Path) -> tuple[int, str]:
    db = f"sqlite:///{tmp_path / 'empty.sqlite'}"  # no profiles: optimising would fail later
    with pytest.raises(SystemExit) as info:
        main(["optimize", str(TOY), "--db", db, "--no-observe", "--out", str(out)])
    return info.value.code or 0, " ".join(capsys.readouterr().err.split())


def test_out_under_a_file_is_refused_first(capsys, tmp_path: Path) -> None:
    (tmp_path / "plans").write_text("not a folder")
    out = tmp_path / "plans" / "x.plan.json"
    code, err = optimize(capsys, tmp_path, out)
    assert code == 2 and "Traceback" not in err
    assert f"--out {out} cannot be written" in err and "is a file, not a folder" in err
    assert "hint:" in err and "no profile" not in err


def test_out_that_is_a_folder_is_refused_first(capsys, tmp_path: Path) -> None:
    code, err = optimize(capsys, tmp_path, tmp_path)
    assert code == 2 and f"--out {tmp_path} is a folder" in err and "plan.json" in err


def test_out_in_missing_folders_is_accepted(capsys, tmp_path: Path) -> None:
    """Missing folders are not an error: the plan's writer makes them (the run goes on to
    the next check, here the missing profiles)."""
    code, err = optimize(capsys, tmp_path, tmp_path / "home" / "plans" / "x.plan.json")
    assert code == 2 and "no profile for stage" in err
