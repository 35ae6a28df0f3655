"""Lambda's ``REPORT`` log line: what the platform measured and billed for one invocation.

Two readers share this parser: the AWS backend takes the line from a synchronous
invoke's log tail (``LogType=Tail``: :func:`last_report`), and
:mod:`wisefuse_plugins.profiles.importers` from CloudWatch logs a user exports, in the text
or the JSON log format (:func:`full_report`: a sample needs every field).

>>> r = parse_report_line("REPORT RequestId: 1\\tDuration: 2.5 ms\\tBilled Duration: 3 ms\\t"
...                       "Memory Size: 128 MB\\tMax Memory Used: 40 MB\\tInit Duration: 99.1 ms")
>>> (r.billed_ms, r.memory_mb, r.max_memory_mb, r.init_ms, r.cold)
(3.0, 128, 40.0, 99.1, True)
>>> parse_report_line("START RequestId: 1 Version: $LATEST") is None
True
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

#: ``Name: value`` pairs of the text format. The longer names come first, so that
#: ``Billed Duration`` and ``Init Duration`` are not read as ``Duration``.
_FIELD = re.compile(
    r"(RequestId|Billed Restore Duration|Restore Duration|Billed Duration|Init Duration"
    r"|Max Memory Used|Memory Size|Duration|Status):\s*([0-9A-Za-z.\-]+)"
)
#: The JSON log format's ``platform.report`` metrics, by their text-format names.
_JSON_METRICS = {
    "durationMs": "Duration",
    "billedDurationMs": "Billed Duration",
    "memorySizeMB": "Memory Size",
    "maxMemoryUsedMB": "Max Memory Used",
    "initDurationMs": "Init Duration",
    "restoreDurationMs": "Restore Duration",
}
#: What a REPORT line must hold to say what was billed.
REQUIRED = ("Duration", "Billed Duration", "Memory Size")


@dataclass(frozen=True)
class Report:
    """One ``REPORT`` line, the source of truth for billing."""

    request_id: str | None
    duration_ms: float
    billed_ms: float
    memory_mb: int
    max_memory_mb: float | None = None
    init_ms: float | None = None  # present on cold starts only
    status: str | None = None  # "timeout", "error" when the platform says so

    @property
    def cold(self) -> bool:
        return self.init_ms is not None


def parse_report_line(line: str) -> Report | None:
    """The REPORT line in ``line``, text (tab- or space-separated, with or without a
    CloudWatch timestamp in front) or JSON (``{"type": "platform.report", ...}``); None for
    any other log line. Raises ValueError for a REPORT line without :data:`REQUIRED`."""
    text = line.strip()
    fields: dict[str, str] = {}
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            return None
        if not isinstance(doc, dict) or doc.get("type") != "platform.report":
            return None
        record = doc.get("record") or {}
        if record.get("requestId"):
            fields["RequestId"] = str(record["requestId"])
        if record.get("status"):
            fields["Status"] = str(record["status"])
        metrics = record.get("metrics") or {}
        fields.update(
            {name: str(metrics[key]) for key, name in _JSON_METRICS.items() if key in metrics}
        )
    elif "REPORT RequestId" in text:
        fields = dict(_FIELD.findall(text[text.index("REPORT RequestId") :]))
    else:
        return None
    missing = [k for k in REQUIRED if k not in fields]
    if missing:
        raise ValueError(f"REPORT line without {', '.join(missing)}: {text[:200]!r}")
    peak, init = fields.get("Max Memory Used"), fields.get("Init Duration")
    return Report(
        request_id=fields.get("RequestId"),
        duration_ms=float(fields["Duration"]),
        billed_ms=float(fields["Billed Duration"]),
        memory_mb=int(float(fields["Memory Size"])),
        max_memory_mb=float(peak) if peak is not None else None,
        init_ms=float(init) if init is not None else None,
        status=fields.get("Status"),
    )


def last_report(log: str) -> Report | None:
    """The last ``REPORT`` line of a log tail, or None if there is none (or it is cut short):
    what the AWS backend reads after a synchronous invoke, where what was billed is enough.

    >>> r = last_report("START RequestId: 1\\nREPORT RequestId: 1\\tDuration: 2.5 ms\\t"
    ...                 "Billed Duration: 3 ms\\tMemory Size: 128 MB\\tMax Memory Used: 40 MB")
    >>> (r.billed_ms, r.memory_mb, r.cold)
    (3.0, 128, False)
    """
    lines = [ln for ln in log.splitlines() if ln.startswith("REPORT ")]
    if not lines:
        return None
    try:
        return parse_report_line(lines[-1])
    except ValueError:
        return None


def full_report(line: str) -> Report | None:
    """:func:`parse_report_line`, for a sample: None for any other log line; ValueError for
    a REPORT line that lacks a field a sample needs (the request id and the peak memory,
    besides what was billed)."""
    found = parse_report_line(line)
    if found is None:
        return None
    needed = {"RequestId": found.request_id, "Max Memory Used": found.max_memory_mb}
    missing = [name for name, value in needed.items() if value is None]
    if missing:
        raise ValueError(f"REPORT line without {', '.join(missing)}: {line.strip()[:200]!r}")
    return found
