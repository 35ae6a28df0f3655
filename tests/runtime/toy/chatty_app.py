"""Functions that print and log, for the tests of what a unit's log captures."""

from __future__ import annotations

import logging
import sys
import threading
import time

log = logging.getLogger(__name__)

print("chatty_app imported")  # a cold start's import: the <setup> stage


def numbers(n: int) -> list[int]:
    print(f"making {n} numbers")
    log.info("made %d numbers", n)
    return list(range(n))


def shout(x: int) -> int:
    for part in ("instance ", "of ", f"{x}\n"):  # one line in three writes
        sys.stdout.write(part)
        time.sleep(0.002)  # other instances write meanwhile
    print(f"stderr of {x}", file=sys.stderr)
    log.warning("warning of %d", x)
    return x


def in_thread(x: int) -> int:
    """Prints from a thread of its own, which carries no context."""
    t = threading.Thread(target=lambda: print(f"thread of {x}"))
    t.start()
    t.join()
    return x


def flood(lines: int) -> int:
    for i in range(lines):
        print(f"line {i:06d} " + "x" * 100)
    return lines


def fail_after_print(x: int) -> int:
    print(f"about to fail on {x}")
    log.error("failing now")
    raise RuntimeError("planned failure")


def configures_logging(x: int) -> int:
    """A logger with a StreamHandler of its own, made in the unit: it writes to the captured
    stderr, and its records propagate to the root logger too."""
    own = logging.getLogger("chatty.own")
    if not own.handlers:
        handler = logging.StreamHandler()  # sys.stderr now: the captured stream
        handler.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
        own.addHandler(handler)
    own.warning("configured %d", x)
    return x


def no_newline() -> int:
    sys.stdout.write("no newline at the end")
    return 1


class RuntimeLikeHandler(logging.Handler):
    """Like the AWS Lambda runtime's handler on the root logger (its standard log sink):
    writes each record to ``sys.stdout`` as it is at that moment, from ``emit``."""

    def emit(self, record: logging.LogRecord) -> None:
        self._sink(f"[{record.levelname}]\t{record.getMessage()}\n")

    def _sink(self, text: str) -> None:
        sys.stdout.write(text)


def under_runtime_logging(x: int) -> int:
    root = logging.getLogger()
    if not any(isinstance(h, RuntimeLikeHandler) for h in root.handlers):
        root.addHandler(RuntimeLikeHandler())
    log.warning("runtime %d", x)
    return x


def print_then_hang(x: int) -> int:
    """Prints, then outlives its unit's timeout: the handler never returns its logs."""
    print(f"hanging on {x}", flush=True)
    time.sleep(30)
    return x
