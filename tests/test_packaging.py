"""`import wisefuse_plugins` stays light and works without Airflow or Prefect installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE_MODULES = [
    "wisefuse_plugins",
    "wisefuse_plugins.ir",
    "wisefuse_plugins.cli",
    "wisefuse_plugins.errors",
]


def test_core_imports_no_framework():
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in CORE_MODULES)
        + "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'airflow', 'prefect', 'prefect_aws', 'boto3'})\n"
        + "print(','.join(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "", f"core modules imported frameworks: {proc.stdout}"


@pytest.mark.slow
def test_installs_and_runs_without_extras(tmp_path):
    """A venv with only the core dependencies (no Airflow, no Prefect) can import and inspect."""
    uv = [sys.executable, "-m", "uv"]
    if subprocess.run([*uv, "--version"], capture_output=True, check=False).returncode != 0:
        uv_bin = shutil.which("uv")
        if uv_bin is None:
            pytest.skip("uv is not available to build a second environment")
        uv = [uv_bin]
    venv = tmp_path / "venv"
    env = {**os.environ, "UV_OFFLINE": os.environ.get("UV_OFFLINE", "0")}
    subprocess.run(
        [*uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True, env=env
    )
    py = venv / "bin" / "python"
    subprocess.run(
        [*uv, "pip", "install", "--quiet", "--python", str(py), str(ROOT)], check=True, env=env
    )
    probe = "import importlib.util as u; import wisefuse_plugins.ir, wisefuse_plugins.cli; print(u.find_spec('airflow') is None and u.find_spec('prefect') is None)"
    out = subprocess.run(
        [str(py), "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert out.stdout.strip() == "True"
    proc = subprocess.run(
        [
            str(venv / "bin" / "wisefuse"),
            "inspect",
            str(ROOT / "tests" / "data" / "video_analytics.ir.json"),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "extract_features" in proc.stdout
