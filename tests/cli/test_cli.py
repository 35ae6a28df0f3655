"""The CLI skeleton: help, version, inspect, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from wisefuse_plugins.cli import main

DATA = Path(__file__).resolve().parents[1] / "data"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out = capsys.readouterr()
    return info.value.code or 0, out.out, out.err


def test_help_lists_commands(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "inspect" in out and "demo" in out


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("wisefuse-plugins ")


def test_inspect_shows_stages_edges_and_parallelism(capsys):
    code, out, _ = run(capsys, "inspect", str(DATA / "video_analytics.ir.json"))
    assert code == 0
    for text in (
        "extract_features",
        "x4 (observed)",
        "scatter",
        "gather",
        "opaque",
        "BashOperator",
    ):
        assert text in out


def test_inspect_json_round_trips(capsys):
    code, out, _ = run(capsys, "inspect", "--json", str(DATA / "video_analytics.ir.json"))
    assert code == 0
    printed, written = json.loads(out), json.loads((DATA / "video_analytics.ir.json").read_text())
    # the code root is printed resolved against the IR file's folder; all else as written
    assert printed["workflow"]["source"].pop("root") == str(DATA)
    assert written["workflow"]["source"].pop("root") == "."
    assert printed == written


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("cyclic.ir.json", "cycle: split_video -> extract_features"),
        ("not_json.ir.json", "not valid JSON"),
        ("missing.ir.json", "does not exist"),
        ("missing.py", "does not exist"),
    ],
)
def test_bad_input_is_one_clear_line(capsys, name, message):
    code, _, err = run(capsys, "inspect", str(DATA / name))
    assert code == 2
    lines = err.strip().splitlines()
    assert lines[0].startswith("error: ") and message in lines[0]
    assert name in lines[0]
    assert all(line.startswith(("error:", "hint:")) for line in lines)
    assert "Traceback" not in err


def test_debug_shows_the_traceback():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "wisefuse_plugins",
            "--debug",
            "inspect",
            str(DATA / "cyclic.ir.json"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "IRError" in proc.stderr


def test_console_script_is_installed():
    exe = Path(sys.executable).with_name("wisefuse")
    proc = subprocess.run(
        [str(exe), "inspect", str(DATA / "cyclic.ir.json")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and proc.stderr.startswith("error:")
