"""Deployment zips: deterministic, only what the function needs, within Lambda's limits."""

from __future__ import annotations

import base64
import hashlib

import pytest

from wisefuse_plugins.runtime import packaging as pk


def _tree(root):
    files = {
        "app.py": "def f():\n    return 1\n",
        "pkg/__init__.py": "",
        "pkg/util.py": "X = 1\n",
        "pkg/table.csv": "a,b\n1,2\n",
        "big.bin": "x" * 5000,
        "tests/test_app.py": "def test(): pass\n",
        "test_top.py": "",
        "conftest.py": "",
        ".venv/lib/site.py": "",
        "pkg/__pycache__/util.cpython-311.pyc": "",
        ".git/config": "",
        ".env": "AWS_SECRET_ACCESS_KEY=nope\n",
        "server.pem": "-----BEGIN-----\n",
        "notes/.hidden": "",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_zip_is_deterministic_and_holds_only_what_runs(tmp_path):
    root = _tree(tmp_path / "code")
    spec = b'{"unit": "u"}'
    first = pk.Packager(root, max_data_bytes=1000).build({"u": spec})
    (root / "app.py").touch()  # a new mtime changes nothing
    second = pk.Packager(root, max_data_bytes=1000).build({"u": spec})
    assert first.data == second.data
    assert first.sha256 == base64.b64encode(hashlib.sha256(first.data).digest()).decode()
    names = pk.zip_names(first.data)
    assert names == sorted(names)
    user = sorted(n.removeprefix("wisefuse_code/") for n in names if n.startswith("wisefuse_code/"))
    assert user == ["app.py", "pkg/__init__.py", "pkg/table.csv", "pkg/util.py"]
    assert first.skipped == ("wisefuse_code/big.bin",)
    assert "wisefuse_units/u.unit.json" in names
    assert "wisefuse_plugins/runtime/handler.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    # a different spec changes the zip, so only that unit's function gets new code
    assert pk.Packager(root).build({"u": b'{"unit": "v"}'}).sha256 != first.sha256


def test_extra_roots_are_importable_top_level_folders(tmp_path):
    root = _tree(tmp_path / "dags")
    extra = tmp_path / "examples"
    (extra / "apps").mkdir(parents=True)
    (extra / "apps" / "video.py").write_text("Y = 2\n")
    names = pk.zip_names(pk.Packager(root, (extra,)).build({}).data)
    assert "examples/apps/video.py" in names
    with pytest.raises(pk.WiseFuseError, match="shadow"):
        pk.Packager(root, (tmp_path / "wisefuse_code",)).build({})


def test_size_limits_give_a_clear_error(tmp_path, monkeypatch):
    root = _tree(tmp_path / "code")
    package = pk.Packager(root).build({})
    with pytest.raises(pk.PackageTooLarge, match="250 MB") as info:
        pk.check_size(package, layer_bytes=pk.MAX_UNZIPPED_BYTES)
    assert "layers" in str(info.value) and "container image" in (info.value.hint or "")
    monkeypatch.setattr(pk, "MAX_ZIPPED_BYTES", 1000)
    with pytest.raises(pk.PackageTooLarge, match="zipped") as info:
        pk.Packager(root).build({})
    assert "layer" in (info.value.hint or "")


def test_missing_code_root(tmp_path):
    with pytest.raises(pk.WiseFuseError, match="not a directory"):
        pk.Packager(tmp_path / "nope").build({})


def test_runtime_requirements_cover_the_handlers_imports():
    import subprocess
    import sys

    code = (
        "import sys, wisefuse_plugins.runtime.handler, wisefuse_plugins.runtime.s3store\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    third_party = set(out.stdout.split()) - {"wisefuse_plugins", "__main__", "_distutils_hack"}
    third_party = {m for m in third_party if not m.startswith("_sysconfigdata")}
    required = {r.split(">")[0].split("=")[0].split("<")[0] for r in pk.runtime_requirements()}
    # pydantic brings pydantic_core, typing_extensions, annotated_types, typing_inspection
    helpers = {"pydantic_core", "typing_extensions", "annotated_types", "typing_inspection"}
    assert third_party - helpers <= required, third_party
