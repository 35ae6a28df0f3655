"""JSON round trips and the loader's errors, including random input (hypothesis)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wisefuse_plugins.ir import IR_VERSION, IRError, dump, from_json, load, to_json

from .test_validate import video_like

DATA = Path(__file__).resolve().parents[1] / "data"


def test_round_trip_is_lossless(tmp_path):
    wf = video_like()
    assert from_json(to_json(wf)) == wf
    path = dump(wf, tmp_path / "wf.json")
    assert load(path) == wf
    assert to_json(load(path)) == to_json(wf)


def test_checked_in_ir_loads():
    wf = load(DATA / "video_analytics.ir.json")
    assert wf.stage("extract_features").parallelism == 4


def _doc() -> dict:
    return json.loads(to_json(video_like()))


@pytest.mark.parametrize(
    ("mutate", "path", "reason"),
    [
        (lambda d: d.pop("version"), "$.version", "unsupported version None"),
        (lambda d: d.update(version=99), "$.version", "unsupported version 99"),
        (lambda d: d.update(format="something"), "$.format", "expected 'wisefuse-ir'"),
        (lambda d: d.pop("workflow"), "$.workflow", "required"),
        (lambda d: d.update(extra=1), "$.extra", "unknown field"),
        (lambda d: d["workflow"]["stages"][1].pop("id"), "$.workflow.stages[1].id", "required"),
        (
            lambda d: d["workflow"]["stages"][1].update(parallelism="many"),
            "$.workflow.stages[1].parallelism",
            "integer",
        ),
        (
            lambda d: d["workflow"]["stages"][1].update(parallelism=0),
            "$.workflow.stages[1].parallelism",
            "greater than",
        ),
        (
            lambda d: d["workflow"]["stages"][1]["bindings"].update(chunk={"kind": "teleport"}),
            "$.workflow.stages[1].bindings.chunk",
            "tag",
        ),
        (
            lambda d: d["workflow"]["stages"][1]["bindings"]["chunk"].pop("stage"),
            "$.workflow.stages[1].bindings.chunk.stage",
            "required",
        ),
        (
            lambda d: d["workflow"]["edges"][0].update(pattern="sideways"),
            "$.workflow.edges[0].pattern",
            "Input should be",
        ),
        (
            lambda d: d["workflow"]["edges"].append(
                dict(src="notify", dst="split", kind="control", pattern="one_to_one")
            ),
            "$.workflow.edges",
            "cycle",
        ),
    ],
)
def test_bad_documents_name_path_and_reason(mutate, path, reason):
    doc = _doc()
    mutate(doc)
    with pytest.raises(IRError) as info:
        from_json(json.dumps(doc))
    assert any(p == path and reason in r for p, r in info.value.problems), info.value.problems


@pytest.mark.parametrize("text", ["", "{", "[]", "null", "42", '"ir"', "\x00", "{" * 100_000])
def test_not_a_document(text):
    with pytest.raises(IRError) as info:
        from_json(text)
    assert info.value.path == "$"


def test_truncated_file(tmp_path):
    text = to_json(video_like())
    (tmp_path / "t.json").write_text(text[: len(text) // 2])
    with pytest.raises(IRError, match="not valid JSON"):
        load(tmp_path / "t.json")
    with pytest.raises(IRError, match="does not exist"):
        load(tmp_path / "missing.json")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=30,
)
field_names = st.sampled_from(
    [
        "id",
        "kind",
        "callable",
        "bindings",
        "parallelism",
        "stage",
        "values",
        "value",
        "src",
        "dst",
        "pattern",
        "stages",
        "edges",
        "name",
        "path",
        "qualname",
        "code_hash",
    ]
)
ir_like = st.recursive(
    json_values,
    lambda kids: st.dictionaries(field_names, kids, max_size=6) | st.lists(kids, max_size=4),
    max_leaves=40,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.one_of(
        ir_like,
        st.builds(
            lambda w: {"format": "wisefuse-ir", "version": IR_VERSION, "workflow": w}, ir_like
        ),
    )
)
def test_random_json_only_raises_irerror(doc):
    with contextlib.suppress(IRError):
        from_json(json.dumps(doc))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_valid_document_only_raises_irerror(data):
    doc = _doc()
    stage = data.draw(st.integers(0, len(doc["workflow"]["stages"]) - 1))
    key = data.draw(field_names)
    doc["workflow"]["stages"][stage][key] = data.draw(json_values)
    try:
        wf = from_json(json.dumps(doc))
    except IRError:
        return
    assert from_json(to_json(wf)) == wf
