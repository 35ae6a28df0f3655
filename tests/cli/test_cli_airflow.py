"""``wisefuse inspect`` on Airflow DAG files (read through the Airflow adapter)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from wisefuse_plugins.cli import main

pytestmark = [
    pytest.mark.airflow,
    pytest.mark.skipif(importlib.util.find_spec("airflow") is None, reason="needs apache-airflow"),
]

REPO = Path(__file__).resolve().parents[2]
VIDEO = REPO / "airflow" / "video_analytics.py"
TWO_DAGS = REPO / "tests" / "adapters" / "dags" / "two_dags.py"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out = capsys.readouterr()
    return info.value.code or 0, out.out, out.err


def test_inspect_a_dag_file_prints_its_stages(capsys, monkeypatch) -> None:
    monkeypatch.chdir(REPO)  # the command as a user types it, from the repository
    code, out, _ = run(capsys, "inspect", "airflow/video_analytics.py")
    assert code == 0
    for text in (
        "video_analytics (airflow: video_analytics.py)",
        "split_video",
        "extract_features",
        "classify",
        "aggregate",
        "x10 (expected)",
        "item of split_video",
        "all of classify",
        "scatter",
        "one_to_one",
        "gather",
    ):
        assert text in out


def test_inspect_json_of_a_dag_file_is_only_json(capsys) -> None:
    """Airflow logs while it parses; none of it may reach stdout."""
    code, out, _ = run(capsys, "inspect", "--json", f"{VIDEO}::video_analytics")
    assert code == 0
    doc = json.loads(out)
    assert doc["workflow"]["source"]["entry"] == "video_analytics"
    assert [s["id"] for s in doc["workflow"]["stages"]] == [
        "split_video",
        "extract_features",
        "classify",
        "aggregate",
    ]


def test_dag_id_after_double_colon(capsys) -> None:
    code, out, _ = run(capsys, "inspect", f"{TWO_DAGS}::second")
    assert code == 0 and "second (airflow: two_dags.py)" in out


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (str(TWO_DAGS), "defines 2 DAGs (first, second); say which one"),
        (f"{TWO_DAGS}::third", "has no DAG 'third'"),
        (str(REPO / "tests" / "adapters" / "dags" / "broken.py"), "failed to import: RuntimeError"),
    ],
)
def test_dag_file_errors_are_one_clear_line(capsys, target: str, message: str) -> None:
    code, _, err = run(capsys, "inspect", target)
    assert code == 2
    lines = err.strip().splitlines()
    assert lines[0].startswith("error: ") and message in lines[0]
    assert all(line.startswith(("error:", "hint:")) for line in lines)
