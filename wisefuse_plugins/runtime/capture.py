"""What a unit's functions print and log, captured per stage and instance for the response.

Airflow users read a task's log first; on Lambda, what a function prints goes to CloudWatch,
far from the task that invoked it. So while a unit runs, the handler tees what its
functions write (``sys.stdout`` / ``sys.stderr``, and records of :mod:`logging` loggers
that propagate to the root logger) into its response as ``"logs"``, one record per line::

    {"stage": "split", "instance": 3, "stream": "stdout", "line": "42 frames"}
    {"stage": "split", "instance": 3, "stream": "log", "level": "WARNING", "line": "..."}

and every orchestrator writes them into the log of the task that ran the unit
(:func:`log_lines`). Everything still reaches the real streams, so the function's own log
(CloudWatch, the local worker's log) keeps it, as on Lambda.

- Attribution: a contextvar names the stage and instance running in each thread (a
  bundle's instances run on a thread pool). Threads a user's function starts itself carry
  no context: in a function's own environment (:func:`capturing` with ``exclusive``, as the
  Lambda entry point runs) their lines go to the only stage instance running, or to none
  (``stage`` null) when several run; in a shared process they are not captured.
- Logging: while a unit runs, the root logger passes records from :data:`ENV_LEVEL`
  (``INFO`` unless the unit's environment says otherwise: the level of Airflow's task log)
  and a handler on it captures them. A record no other handler emits is written to the
  real ``stderr`` (``LEVEL logger: message``), as Python's last-resort handler would.
  A handler that writes records to the captured streams (a ``StreamHandler`` the user's
  code adds, the Lambda runtime's own) is captured once, as the record it writes.
- Bounds: at most :data:`LOG_BYTES` of records (their JSON) per response, which Lambda caps
  at 6 MB with the values passed by value (:mod:`.passing`); the first lines are kept and
  the last record says how many more were cut and where they all are. Never silently.
- Not captured: what is written to file descriptors directly (subprocesses, C libraries)
  or to a stream object saved before the unit ran; it reaches the function's log only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TextIO

from wisefuse_plugins.runtime.loader import USER_MODULE_PREFIX

LOG_BYTES = 256 * 1024
"""Log record bytes (JSON) one response carries at most: beside :data:`.passing.RESPONSE_BYTES`
of values (a third more as base64), well under Lambda's 6 MB response."""

SPLIT_CHARS = 16 * 1024
"""A line longer than this is split into records of this many characters (none is lost)."""

ENV_LEVEL = "WISEFUSE_LOG_LEVEL"
DEFAULT_LEVEL = "INFO"

#: the JSON a record spends around its line and stage (keys, quotes, the instance)
_RECORD_OVERHEAD = 64


@dataclass(frozen=True)
class _Where:
    capture: Capture
    stage: str | None
    instance: int | None


_where: ContextVar[_Where | None] = ContextVar("wisefuse_capture_where", default=None)


class Capture:
    """The log records of one invocation, within ``limit`` bytes (thread-safe)."""

    def __init__(self, limit: int = LOG_BYTES, *, exclusive: bool = False) -> None:
        self.limit = limit
        self.exclusive = exclusive  # the process is the function's: context-less threads count
        self.records: list[dict[str, Any]] = []
        self.cut_lines = 0
        self.cut_chars = 0
        self._left = limit
        self._partial: dict[tuple[str | None, int | None, str], str] = {}
        self._active: dict[tuple[str | None, int | None], int] = {}
        self._lock = threading.Lock()
        self._closed = False

    @contextlib.contextmanager
    def stage(self, stage: str | None, instance: int | None = None) -> Iterator[None]:
        """Attribute what this thread writes inside the block to ``stage``/``instance``."""
        key = (stage, instance)
        with self._lock:
            self._active[key] = self._active.get(key, 0) + 1
        token = _where.set(_Where(self, stage, instance))
        try:
            yield
        finally:
            _where.reset(token)
            with self._lock:
                self._active[key] -= 1
                if not self._active[key]:
                    del self._active[key]
                for stream in ("stdout", "stderr"):
                    rest = self._partial.pop((stage, instance, stream), None)
                    if rest:
                        self._keep(stage, instance, stream, rest, None)

    def write(self, where: _Where, stream: str, text: str) -> None:
        """Part of a stream: whole lines become records, the rest waits for its newline."""
        key = (where.stage, where.instance, stream)
        with self._lock:
            text = self._partial.pop(key, "") + text
            if "\n" not in text and len(text) <= SPLIT_CHARS:  # print() writes its text first
                self._partial[key] = text
                return
            *lines, rest = text.split("\n")
            for line in lines:
                line = line.removesuffix("\r")
                if len(line) <= SPLIT_CHARS:
                    self._keep(where.stage, where.instance, stream, line, None)
                    continue
                for start in range(0, len(line), SPLIT_CHARS):
                    self._keep(
                        where.stage, where.instance, stream, line[start : start + SPLIT_CHARS], None
                    )
            while len(rest) > SPLIT_CHARS:  # a line that never ends does not grow without bound
                self._keep(where.stage, where.instance, stream, rest[:SPLIT_CHARS], None)
                rest = rest[SPLIT_CHARS:]
            if rest:
                self._partial[key] = rest

    def log(self, where: _Where, level: str, text: str) -> None:
        """One log record (whole, even over several lines: it has one level)."""
        with self._lock:
            self._keep(where.stage, where.instance, "log", text, level)

    def _keep(
        self, stage: str | None, instance: int | None, stream: str, line: str, level: str | None
    ) -> None:
        if self._closed:
            return
        plain = line.isascii() and line.isprintable() and '"' not in line and "\\" not in line
        size = (len(line) + 2 if plain else len(json.dumps(line))) + len(stage or "")
        size += _RECORD_OVERHEAD
        if self.cut_lines or size > self._left:  # full: keep the head, count the rest
            self.cut_lines += 1
            self.cut_chars += len(line)
            return
        self._left -= size
        record: dict[str, Any] = {"stage": stage, "instance": instance, "stream": stream}
        if level is not None:
            record["level"] = level
        record["line"] = line
        self.records.append(record)

    def sole_stage(self) -> _Where:
        """Where a line from a thread without context goes: the only stage instance running."""
        with self._lock:
            active = list(self._active)
        stage, instance = active[0] if len(active) == 1 else (None, None)
        return _Where(self, stage, instance)

    def close(self) -> list[dict[str, Any]]:
        """The records, partial lines included, with the cut said in a last record."""
        with self._lock:
            for (stage, instance, stream), rest in sorted(
                self._partial.items(), key=lambda kv: str(kv[0])
            ):
                self._keep(stage, instance, stream, rest, None)
            self._partial.clear()
            self._closed = True
            records = list(self.records)
            if self.cut_lines:
                records.append(
                    {
                        "stage": None,
                        "instance": None,
                        "stream": "wisefuse",
                        "level": "WARNING",
                        "line": cut_message(self.cut_lines, self.cut_chars, self.limit),
                    }
                )
        return records


def cut_message(lines: int, chars: int, limit: int) -> str:
    group = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
    where = f"the function's log ({group})" if group else "the function's log"
    return (
        f"... {lines:,} more lines ({chars:,} characters) cut here: a response carries at most "
        f"{limit // 1024:,} KB of log lines; {where} has them all"
    )


# --------------------------------------------------------------------------- streams


def _current() -> _Where | None:
    where = _where.get()
    if where is not None:
        return where
    active = _captures
    if len(active) == 1 and active[0].exclusive:
        return active[0].sole_stage()
    return None


_HANDLE = logging.Handler.handle.__code__
#: how far up a stream write looks for a logging handler at work (Handler.handle is 2
#: frames above a StreamHandler's write, 3 above the Lambda runtime's)
_HANDLER_DEPTH = 6


def _record_being_handled() -> logging.LogRecord | None:
    """The log record a handler is emitting, when a stream write comes from one."""
    frame = sys._getframe(2)  # what called Tee.write
    for _ in range(_HANDLER_DEPTH):
        if frame is None:
            return None
        if frame.f_code is _HANDLE:
            record = frame.f_locals.get("record")
            return record if isinstance(record, logging.LogRecord) else None
        frame = frame.f_back
    return None


class _Tee:
    """A stand-in for ``sys.stdout`` / ``sys.stderr``: writes through, and captures."""

    def __init__(self, stream: TextIO, name: str) -> None:
        self._stream = stream
        self._name = name

    def write(self, text: str) -> int:
        written = self._stream.write(text)
        if text and _captures:
            where = _current()
            if where is not None:
                record = None if text == "\n" else _record_being_handled()  # print's end
                if record is None:
                    where.capture.write(where, self._name, text)
                elif not getattr(record, "_wisefuse_captured", False):
                    # another handler writing a record to this stream (basicConfig's, the
                    # Lambda runtime's): captured once, as that record
                    record._wisefuse_captured = True
                    where.capture.log(where, record.levelname, text.rstrip("\n"))
        return written

    def writelines(self, lines: Sequence[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:  # flush, fileno, encoding, buffer, isatty...
        return getattr(self._stream, name)


# --------------------------------------------------------------------------- logging


#: the loader's module name for a user's file, ``wisefuse_user_<hash>_<stem>``: shown as
#: ``<stem>``, the name the user knows
_USER_MODULE = re.compile(rf"^{re.escape(USER_MODULE_PREFIX)}[0-9a-f]+_")


class _Formatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(levelname)s %(logger)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        logger = _USER_MODULE.sub("", record.name)
        return self._fmt % {**record.__dict__, "logger": logger}  # type: ignore[operator]


class _Handler(logging.Handler):
    """On the root logger while units run: captures the records that reach it."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.setFormatter(_Formatter())

    def handle(self, record: logging.LogRecord) -> bool:  # no handler lock: captures lock
        where = _current()
        if where is None:
            return False
        try:
            if not getattr(record, "_wisefuse_captured", False):
                text = self.format(record)
                record._wisefuse_captured = True
                where.capture.log(where, record.levelname, text)
                if not _emitted_elsewhere(record):
                    _real["stderr"].write(text + "\n")
        except Exception:
            self.handleError(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:  # pragma: no cover - handle() does it
        self.handle(record)


def _emitted_elsewhere(record: logging.LogRecord) -> bool:
    """Whether another handler on the record's way to the root logger takes it."""
    logger: logging.Logger | None = logging.getLogger(record.name)
    while logger is not None:
        if any(h is not _HANDLER and record.levelno >= h.level for h in logger.handlers):
            return True
        if not logger.propagate:
            return False
        logger = logger.parent
    return False


_HANDLER = _Handler()
_install_lock = threading.Lock()
_captures: list[Capture] = []  # replaced, never mutated: read without the lock
_real: dict[str, TextIO] = {}
_saved_level: tuple[int, int] | None = None  # (root's level before, the level set)


def capture_level() -> int:
    name = (os.environ.get(ENV_LEVEL) or DEFAULT_LEVEL).upper()
    level = logging.getLevelName(name)
    return level if isinstance(level, int) else logging.INFO


def _install() -> None:
    global _saved_level
    for name in ("stdout", "stderr"):
        current = getattr(sys, name)
        if not isinstance(current, _Tee):
            setattr(sys, name, _Tee(current, name))
        _real[name] = getattr(sys, name)._stream
    root = logging.getLogger()
    if _HANDLER not in root.handlers:
        root.addHandler(_HANDLER)
    level = capture_level()
    if root.level > level:  # NOTSET (0) passes everything already
        _saved_level = (root.level, level)
        root.setLevel(level)


def _uninstall() -> None:
    global _saved_level
    for name in ("stdout", "stderr"):
        current = getattr(sys, name)
        if isinstance(current, _Tee):  # else someone replaced it since: leave theirs alone
            setattr(sys, name, current._stream)
    root = logging.getLogger()
    root.removeHandler(_HANDLER)
    if _saved_level is not None and root.level == _saved_level[1]:
        root.setLevel(_saved_level[0])
    _saved_level = None


@contextlib.contextmanager
def capturing(limit: int = LOG_BYTES, *, exclusive: bool = False) -> Iterator[Capture]:
    """Capture what runs inside :meth:`Capture.stage` blocks until the block ends.

    ``exclusive``: this process runs nothing but the function (a Lambda execution
    environment, a local worker), so lines of threads without context count too.
    Re-entrant and thread-safe: the streams and the root logger are patched while at least
    one capture is open. ``limit`` 0 captures nothing and patches nothing.
    """
    global _captures
    cap = Capture(limit, exclusive=exclusive)
    if not limit:
        yield cap
        return
    with _install_lock:
        if not _captures:
            _install()
        _captures = [*_captures, cap]
    try:
        yield cap
    finally:
        with _install_lock:
            _captures = [c for c in _captures if c is not cap]
            if not _captures:
                _uninstall()


# --------------------------------------------------------------------------- readers


def log_lines(
    payload: Mapping[str, Any], stage_tasks: Mapping[str, str] | None = None
) -> list[tuple[int, str]]:
    """A response's log records as ``(logging level, text)`` for an orchestrator's task log.

    The text starts with where the line came from: the stage (and the original task id
    when ``stage_tasks`` names another), the instance in brackets, the stream::

        split (task video.split)[3] stdout | 42 frames
    """
    lines = []
    for rec in payload.get("logs") or []:
        if not isinstance(rec, Mapping):
            continue
        stage, stream = rec.get("stage"), str(rec.get("stream", "stdout"))
        level = logging.getLevelName(str(rec.get("level") or "INFO"))
        level = level if isinstance(level, int) else logging.INFO
        if stage is None:
            where = "unit"
        else:
            task = (stage_tasks or {}).get(stage)
            where = str(stage) + (f" (task {task})" if task and task != stage else "")
        if rec.get("instance") is not None:
            where += f"[{rec['instance']}]"
        lines.append((level, f"{where} {stream} | {rec.get('line', '')}"))
    return lines
