"""framework_of: a workflow file's framework from its imports; every doubt is a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.targets import framework_of, load_workflow


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wf.py"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "framework"),
    [("from airflow.sdk import dag\n", "airflow"), ("import prefect\n", "prefect")],
)
def test_one_framework_is_found(tmp_path: Path, text: str, framework: str) -> None:
    assert framework_of(_file(tmp_path, text)) == framework


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "from airflow.sdk import dag\nfrom prefect import flow\n",
            "imports both airflow and prefect",
        ),
        ("import os\n", "imports none of airflow, prefect"),
    ],
)
def test_both_or_neither_is_an_error_naming_the_file(
    tmp_path: Path, text: str, reason: str
) -> None:
    path = _file(tmp_path, text)
    with pytest.raises(WiseFuseError, match="cannot tell which framework") as e:
        framework_of(path)
    assert str(path) in str(e.value) and reason in str(e.value)
    assert "framework=" in (e.value.hint or "")


def test_unreadable_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "wf.py"
    path.write_bytes(b"\xff\xfe not utf-8 \xff")
    with pytest.raises(WiseFuseError, match="cannot read workflow file"):
        framework_of(path)
    folder = tmp_path / "dags.py"
    folder.mkdir()
    with pytest.raises(WiseFuseError, match="cannot read workflow file"):
        framework_of(folder)


def test_explicit_framework_skips_detection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wisefuse_plugins import targets

    path = _file(tmp_path, "import os\n")
    seen: list[Path] = []
    monkeypatch.setitem(targets.READERS, "prefect", lambda p, e: seen.append(p))
    load_workflow(path, framework="prefect")
    assert seen == [path]
