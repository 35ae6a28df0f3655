"""Dependency layers resolved from what the code imports, built and cached; `wisefuse package`
(issue 21 item 3)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from wisefuse_plugins.cli import main
from wisefuse_plugins.ir import dump
from wisefuse_plugins.plan.schema import dump_plan
from wisefuse_plugins.runtime import layers
from wisefuse_plugins.runtime import packaging as pk

from .toyflows import PLANS, ROOT, plan, toy_workflow

DAG = """
from airflow.sdk import dag, task
import boto3
import mylib.tools

@task
def load():
    import yaml
    import not_a_real_module_xyz
    return 1
"""


def test_resolution_follows_the_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "dags"
    root.mkdir()
    (root / "dag.py").write_text(DAG)
    beside = tmp_path / "src" / "mylib"  # a source package on sys.path, installed by nobody
    beside.mkdir(parents=True)
    (beside / "__init__.py").write_text("")
    (beside / "tools.py").write_text("from . import helpers\n")
    (beside / "helpers.py").write_text("import typing_extensions\n")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))

    res = layers.resolve([root], entries=[root / "dag.py"])
    assert res.pins["pyyaml"].why.startswith(f"imported at {root / 'dag.py'}:")
    assert res.pins["typing-extensions"].version  # through mylib's relative import
    assert res.pins["pydantic"].why == "wisefuse runtime"
    assert "boto3" in res.pins  # the runtime requires boto3>=1.35: the SDK ships in the layer
    assert res.excluded["apache-airflow-task-sdk"].startswith("a workflow framework")
    assert not any(name.startswith(("apache-airflow", "prefect")) for name in res.pins)
    assert res.unresolved == {"not_a_real_module_xyz": [f"{root / 'dag.py'}:9"]}
    assert res.local_roots == [beside.resolve()]

    (root / "dag.py").write_text("import six\nimport jmespath\n")
    bare = layers.resolve([root], requirements=[])
    assert bare.pins == {} and bare.excluded == {
        "six": "shipped by the Lambda runtime",
        "jmespath": "shipped by the Lambda runtime",
    }


def test_host_layer_is_cached_by_what_goes_in(tmp_path: Path) -> None:
    res = layers.resolve([], requirements=["typing-extensions"])
    first = layers.build_layer(res, method="host", cache=tmp_path)
    names = zipfile.ZipFile(first.path).namelist()
    assert "python/typing_extensions.py" in names
    assert all(n.startswith("python/") and not n.endswith(".pyc") for n in names)
    assert first.sizes.keys() == {"typing-extensions"} and first.method == "host"
    mtime = first.path.stat().st_mtime_ns
    again = layers.build_layer(res, method="host", cache=tmp_path)
    assert again.path == first.path and again.path.stat().st_mtime_ns == mtime  # not rebuilt
    other = layers.build_layer(
        layers.resolve([], requirements=["annotated-types"]), method="host", cache=tmp_path
    )
    assert other.key != first.key
    with pytest.raises(layers.LayerError, match="cannot copy this machine's"):
        arch = "arm64" if layers.host_arch() == "x86_64" else "x86_64"
        layers.build_layer(res, arch, method="host", cache=tmp_path)


def test_pip_command_targets_lambdas_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    res = layers.resolve([], requirements=["typing-extensions"])
    monkeypatch.setattr(layers, "installer", lambda: ["pip"])
    cmd = layers.pip_command(res, "arm64", "python3.11", Path("/t"))
    assert cmd[:2] == ["pip", "install"] and "--only-binary=:all:" in cmd
    platforms = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--platform"]
    assert platforms[0] == "manylinux2014_aarch64" and platforms[-1] == "manylinux_2_26_aarch64"
    assert cmd[cmd.index("--python-version") + 1] == "3.11" and "--implementation" in cmd
    assert cmd[-1].startswith("typing-extensions==")
    monkeypatch.setattr(layers, "installer", lambda: ["/usr/bin/uv", "pip"])
    cmd = layers.pip_command(res, "x86_64", "python3.12", Path("/t"))
    assert cmd[cmd.index("--python-platform") + 1] == "x86_64-manylinux_2_34"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out = capsys.readouterr()
    return info.value.code or 0, out.out, out.err


@pytest.mark.slow
def test_package_command(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WISEFUSE_HOME", str(tmp_path / "home"))
    wf = toy_workflow()
    ir = dump(wf, tmp_path / "toy.ir.json")
    p = plan(wf, *PLANS["bundles-of-2"])
    plan_file = dump_plan(p, tmp_path / "toy.plan.json")
    out = tmp_path / "pkg"
    argv = ["package", str(ir), str(plan_file), "--out", str(out), "--build", "host"]
    code, printed, err = run(capsys, *argv, "--code-root", str(ROOT))
    assert code == 0, err
    assert "layer-x86_64.zip" in printed and "largest" in printed
    assert {f.name for f in out.iterdir()} == {f"{u.id}.zip" for u in p.units} | {
        "layer-x86_64.zip"
    }
    names = zipfile.ZipFile(out / "layer-x86_64.zip").namelist()
    assert any(n.startswith("python/pydantic/") for n in names)
    assert not any(n.startswith(("python/airflow/", "python/prefect/")) for n in names)
    assert len(list((tmp_path / "home" / "layers").glob("*.zip"))) == 1

    monkeypatch.setattr(pk, "MAX_UNZIPPED_BYTES", 2 * 1024 * 1024)  # the layer alone is larger
    code, _, err = run(capsys, *argv, "--code-root", str(ROOT))
    assert code == 2 and "Lambda allows 2 MB" in err and "largest packages: botocore" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_pip_builds_a_layer_for_the_other_architecture(tmp_path: Path) -> None:
    """The pinned wheels of Lambda's platform, downloaded from the package index (a compiled
    one: pydantic-core's arm64 build on an x86_64 host, and the other way round)."""
    try:
        layers.installer()
    except layers.LayerError as err:
        pytest.skip(str(err))
    arch = "arm64" if layers.host_arch() == "x86_64" else "x86_64"
    res = layers.resolve([], requirements=["pydantic-core"])
    layer = layers.build_layer(res, arch, method="pip", cache=tmp_path)
    assert layer.method == "pip" and layer.sizes.keys() >= {"pydantic-core", "typing-extensions"}
    machine = layers.MACHINES[arch]
    names = zipfile.ZipFile(layer.path).namelist()
    assert any(n.startswith("python/pydantic_core/") and f"{machine}-linux" in n for n in names)
    assert not any(n.startswith("python/bin/") or n.endswith(".pyc") for n in names)
