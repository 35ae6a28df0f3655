"""Lambda's REPORT line, one parser for the AWS backend's log tails and the importers."""

from __future__ import annotations

import doctest
import json

import pytest

from wisefuse_plugins.profiles import importers
from wisefuse_plugins.runtime import lambda_report
from wisefuse_plugins.runtime.backends import aws
from wisefuse_plugins.runtime.lambda_report import parse_report_line

TEXT = (
    "2026-11-27T10:00:00.000Z\tREPORT RequestId: 6f1c\tDuration: 1234.56 ms\t"
    "Billed Duration: 1235 ms\tMemory Size: 1769 MB\tMax Memory Used: 312 MB\t"
    "Init Duration: 456.78 ms\tStatus: timeout"
)


@pytest.mark.parametrize("module", [lambda_report, aws])
def test_doctests(module):
    assert doctest.testmod(module).failed == 0


def test_text_and_json_formats_read_alike():
    text = parse_report_line(TEXT)
    record = {
        "requestId": "6f1c",
        "status": "timeout",
        "metrics": {
            "durationMs": 1234.56,
            "billedDurationMs": 1235,
            "memorySizeMB": 1769,
            "maxMemoryUsedMB": 312,
            "initDurationMs": 456.78,
        },
    }
    as_json = parse_report_line(json.dumps({"type": "platform.report", "record": record}))
    assert text == as_json
    assert (text.duration_ms, text.billed_ms, text.memory_mb, text.max_memory_mb) == (
        1234.56, 1235.0, 1769, 312.0,
    )  # fmt: skip
    assert (text.init_ms, text.cold, text.status, text.request_id) == (
        456.78,
        True,
        "timeout",
        "6f1c",
    )
    # other JSON records and lines are not REPORT lines
    assert parse_report_line(json.dumps({"type": "platform.start", "record": {}})) is None
    assert parse_report_line("END RequestId: 6f1c") is None


def test_what_each_reader_needs():
    short = "REPORT RequestId: x\tDuration: 3.1 ms\tBilled Duration: 4 ms\tMemory Size: 128 MB"
    # what was billed is enough for the backend's log tail; a sample needs the peak memory
    assert parse_report_line(short).max_memory_mb is None
    assert aws.parse_report("START RequestId: x\n" + short).billed_ms == 4.0
    with pytest.raises(ValueError, match="without Max Memory Used"):
        importers.parse_report(short)
    # a line cut before the billed fields: an error to the importer, no report to the backend
    cut = "REPORT RequestId: x\tDuration: 3.1 ms"
    with pytest.raises(ValueError, match="without Billed Duration, Memory Size"):
        parse_report_line(cut)
    assert aws.parse_report(cut) is None
