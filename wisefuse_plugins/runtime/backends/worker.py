"""Child process of the local Lambda backend: one execution environment for one function.

Run as a script (``python worker.py CONFIG_JSON``), not with ``-m``, so that a cold start
costs what a Lambda cold start costs (interpreter + the handler's imports) and not the
import of our own package. For the same reason this module imports only the standard
library; the parent imports it too, for the frame format.

Protocol, over inherited pipe fds: the worker sends one frame when it is ready (or could
not load the handler), then answers each request frame with one response frame. A frame
is a header (meta length, body length), a JSON meta object and a raw body (the event or
the JSON-encoded response). Handler output (print, logging) goes to the worker's
stdout/stderr, which the parent points at a log file, as Lambda points them at CloudWatch.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import struct
import sys
import threading
import time
import traceback
from typing import Any

HEADER = struct.Struct("<IQ")
#: Mirrors ``limits.MAX_SYNC_RESPONSE_BYTES`` (this module must not import our package).
MAX_RESPONSE_BYTES = 6 * 1024 * 1024 + 100
OOM_ERROR = {
    "errorType": "Runtime.OutOfMemory",
    "errorMessage": "Runtime exited with error: signal: killed",
    "stackTrace": [],
}


# --- frames (shared with the parent) -------------------------------------------------


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def write_frame(fd: int, meta: dict[str, Any], body: bytes = b"") -> None:
    """Send one frame; raises ``BrokenPipeError`` if the other side is gone."""
    m = json.dumps(meta, separators=(",", ":")).encode()
    if len(body) <= 65536:
        _write_all(fd, HEADER.pack(len(m), len(body)) + m + body)
    else:
        _write_all(fd, HEADER.pack(len(m), len(body)) + m)
        _write_all(fd, body)


def _read_exact(fd: int, n: int) -> bytearray | None:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = os.readv(fd, [view[got:]])
        if k == 0:
            return None
        got += k
    return buf


def read_frame(fd: int) -> tuple[dict[str, Any], bytes] | None:
    """Receive one frame, or ``None`` if the writer closed its end (process gone)."""
    head = _read_exact(fd, HEADER.size)
    if head is None:
        return None
    mlen, blen = HEADER.unpack(head)
    meta = _read_exact(fd, mlen)
    body = _read_exact(fd, blen) if blen else bytearray()
    if meta is None or body is None:
        return None
    return json.loads(meta), bytes(body)


# --- the execution environment -------------------------------------------------------


class LambdaContext:
    """The ``context`` argument, with the attributes of the Python runtime's.

    As in the real runtime, ``memory_limit_in_mb`` is a string (it comes from the
    ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE`` environment variable).
    """

    def __init__(self, cfg: dict[str, Any], request_id: str, deadline: float) -> None:
        self.function_name: str = cfg["function_name"]
        self.function_version = "$LATEST"
        self.invoked_function_arn: str = cfg["arn"]
        self.memory_limit_in_mb = str(cfg["memory_mb"])
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = f"local/[$LATEST]{os.getpid()}"
        self.identity = None
        self.client_context = None
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the timeout (wall clock; see docs/local-backend.md)."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _error(exc: BaseException, skip_frames: int = 1) -> dict[str, Any]:
    tb = exc.__traceback__
    for _ in range(skip_frames):
        if tb is not None:
            tb = tb.tb_next
    return {
        "errorType": type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_list(traceback.extract_tb(tb)),
    }


def _fault(error_type: str, message: str, trace: list[str] | None = None) -> dict[str, Any]:
    return {"errorType": error_type, "errorMessage": message, "stackTrace": trace or []}


def load_handler(spec: str) -> Any:
    """Import ``module.function`` / ``module:function``; faults named as the Python runtime does."""
    try:
        modname, fname = spec.rsplit(":", 1) if ":" in spec else spec.rsplit(".", 1)
    except ValueError as exc:
        raise _Fault(
            _fault("Runtime.MalformedHandlerName", f"Bad handler '{spec}': {exc}")
        ) from None
    import importlib

    try:
        module = importlib.import_module(modname.replace("/", "."))
    except ImportError as exc:
        raise _Fault(
            _fault("Runtime.ImportModuleError", f"Unable to import module '{modname}': {exc}")
        ) from None
    except SyntaxError as exc:
        trace = [f'  File "{exc.filename}" Line {exc.lineno}\n    {exc.text}']
        raise _Fault(
            _fault(
                "Runtime.UserCodeSyntaxError", f"Syntax error in module '{modname}': {exc}", trace
            )
        ) from None
    except Exception as exc:
        raise _Fault(_error(exc, skip_frames=0)) from None
    try:
        return getattr(module, fname)
    except AttributeError:
        raise _Fault(
            _fault("Runtime.HandlerNotFound", f"Handler '{fname}' missing on module '{modname}'")
        ) from None


class _Fault(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["errorMessage"])
        self.error = error


def _status_kb(*keys: str) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                name, _, rest = line.partition(b":")
                if name.decode() in keys:
                    out[name.decode()] = int(rest.split()[0])
    except OSError:
        pass
    return out


def _reset_peak_rss() -> None:
    """Make VmHWM per invocation: writing 5 to clear_refs resets it (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _limit_address_space(limit_bytes: int) -> None:
    """RLIMIT_AS fallback: allow the handler as much new memory as the cgroup limit would.

    The address space of an idle interpreter (thread stacks, allocator arenas, BLAS
    buffers) is far larger than its resident memory, so the limit is set relative to the
    current size: current virtual size + (limit - current resident size).
    """
    st = _status_kb("VmSize", "VmRSS")
    if "VmSize" not in st:
        return
    headroom = max(limit_bytes - st.get("VmRSS", 0) * 1024, 0)
    cap = st["VmSize"] * 1024 + headroom
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def _lifeline(fd: int) -> None:
    """Die with the parent: the read returns only when the parent's end is closed."""
    try:
        while os.read(fd, 1):
            pass
    except OSError:
        pass
    os.killpg(os.getpgrp(), signal.SIGKILL)


def _set_path(cfg: dict[str, Any]) -> None:
    """The function's code, then its layers, before the rest; isolated (``python -I -S``):
    before the standard library only, which is all that such an interpreter has."""
    front = [p for p in [cfg.get("code_dir"), *cfg.get("layer_dirs", ())] if p]
    if cfg.get("isolated"):
        sys.path[:] = [*front, *(p for p in sys.path if p and p not in front)]
    else:
        sys.path[:0] = front


def serve(cfg: dict[str, Any]) -> None:
    req_fd, resp_fd, life_fd = cfg["fds"]
    threading.Thread(target=_lifeline, args=(life_fd,), name="lifeline", daemon=True).start()
    _set_path(cfg)
    try:
        handler = load_handler(cfg["handler"])
    except _Fault as fault:
        sys.stdout.flush()
        sys.stderr.flush()
        write_frame(resp_fd, {"kind": "init_error", "error": fault.error})
        return
    if cfg.get("rlimit_bytes"):
        _limit_address_space(int(cfg["rlimit_bytes"]))
    ru = resource.getrusage(resource.RUSAGE_SELF)
    write_frame(
        resp_fd,
        {"kind": "ready", "t": time.perf_counter(), "cpu_ms": (ru.ru_utime + ru.ru_stime) * 1000},
    )

    while True:
        frame = read_frame(req_fd)
        if frame is None:
            return
        meta, body = frame
        t0 = time.perf_counter()  # CLOCK_MONOTONIC: the parent's clock too
        deadline = time.monotonic() + float(meta["timeout_s"])
        _reset_peak_rss()
        c0, ch0 = time.process_time(), _children_cpu()
        error: dict[str, Any] | None = None
        payload = b""
        fatal = False
        try:
            event = json.loads(body) if body else {}
            result = handler(event, LambdaContext(cfg, meta["request_id"], deadline))
            try:
                payload = json.dumps(result).encode()
            except (TypeError, ValueError) as exc:
                error = _fault("Runtime.MarshalError", f"Unable to marshal response: {exc}")
        except MemoryError:
            error, fatal = dict(OOM_ERROR), True
        except Exception as exc:
            error = _error(exc)
        if error is None and len(payload) > MAX_RESPONSE_BYTES:
            error = _fault(
                "Function.ResponseSizeTooLarge",
                "Response payload size exceeded maximum allowed payload size "
                f"({MAX_RESPONSE_BYTES} bytes).",
            )
            payload = b""
        ch1 = _children_cpu()
        peak_kb = _status_kb("VmHWM").get("VmHWM", 0)
        if ch1 > ch0:  # children reaped during this invocation count too
            peak_kb = max(peak_kb, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        t1 = time.perf_counter()
        write_frame(
            resp_fd,
            {
                "kind": "result",
                "error": error,
                "fatal": fatal,
                "t_start": t0,
                "t_end": t1,
                "cpu_ms": ((time.process_time() - c0) + (ch1 - ch0)) * 1000,
                "max_rss_kb": peak_kb,
            },
            payload,
        )
        if fatal:  # like Lambda, an environment that ran out of memory is not reused
            return


def main(argv: list[str]) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    serve(json.loads(argv[1]))


if __name__ == "__main__":
    main(sys.argv)
