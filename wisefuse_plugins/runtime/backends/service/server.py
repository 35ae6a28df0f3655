"""Starting and stopping the service: one per root (a pid file), a clear error if the port is
taken, and an optional idle shutdown (a service started on demand stops when nobody uses it)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.runtime.backends.local import LocalLambda
from wisefuse_plugins.runtime.backends.service.functions import LambdaService
from wisefuse_plugins.runtime.backends.service.ondemand import LOCK_NAME, owner
from wisefuse_plugins.runtime.backends.service.routes import Handler, Server
from wisefuse_plugins.runtime.store import wisefuse_home

_stopping = threading.Lock()


@dataclass
class Handle:
    """A running service: its URL and port; ``stop()`` shuts it down and releases the root."""

    url: str
    port: int
    service: LambdaService
    _server: Server
    _thread: threading.Thread
    _lock: Path
    stopped: threading.Event = field(default_factory=threading.Event)
    _closed: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        """Stop serving, close the engine, release the root; a second caller waits for it."""
        with _stopping:
            first = not self.stopped.is_set()
            self.stopped.set()
        if not first:
            self._closed.wait(timeout=30)
            return
        try:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)
            self.service.engine.close()
            with contextlib.suppress(FileNotFoundError):
                self._lock.unlink()
        finally:
            self._closed.set()

    def __enter__(self) -> Handle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _take_root(root: Path) -> Path:
    """Claim ``root`` with a pid file; a clear error if a live service already owns it."""
    root.mkdir(parents=True, exist_ok=True)
    lock = root / LOCK_NAME
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            info = owner(root)
            if info is not None:
                raise WiseFuseError(
                    f"another Lambda service (pid {info['pid']}, {info.get('url', '?')}) owns {root}",
                    hint="use that service's URL, stop it, or pass another --root",
                ) from None
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()  # stale: its process is gone
            continue
        os.write(fd, json.dumps({"pid": os.getpid()}).encode())
        os.close(fd)
        return lock
    raise WiseFuseError(
        f"could not take the service lock {lock}", hint="remove it if no service runs"
    )


class _Tracked(Handler):
    """The API handler, counting requests in flight for the idle shutdown."""

    def _dispatch(self) -> None:
        server: _IdleServer = self.server  # type: ignore[assignment]
        server.begin()
        try:
            super()._dispatch()
        finally:
            server.end()

    do_GET = do_POST = do_PUT = do_DELETE = _dispatch


class _IdleServer(Server):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.in_flight = 0
        self.last_request = time.monotonic()
        self._count = threading.Lock()

    def begin(self) -> None:
        with self._count:
            self.in_flight += 1
            self.last_request = time.monotonic()

    def end(self) -> None:
        with self._count:
            self.in_flight -= 1
            self.last_request = time.monotonic()

    def idle_for(self) -> float:
        """Seconds since the last request ended; 0 while one runs or the engine is busy."""
        with self._count:
            if self.in_flight or _engine_busy(self.service.engine):
                return 0.0
            return time.monotonic() - self.last_request


def _engine_busy(engine: LocalLambda) -> bool:
    """True while the engine runs an invocation (an ``Event`` one has no request open)."""
    return engine._state.busy > 0


def _watch_idle(handle: Handle, server: _IdleServer, idle_s: float) -> None:
    while not handle.stopped.wait(min(5.0, max(0.1, idle_s / 10))):
        if server.idle_for() >= idle_s:
            logging.getLogger(__name__).info("idle for %.0f s: stopping", idle_s)
            handle.stop()
            return


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    root: str | Path | None = None,
    *,
    region: str = "us-east-1",
    engine: LocalLambda | None = None,
    engine_options: dict[str, Any] | None = None,
    idle_s: float | None = None,
    isolated: bool = False,
) -> Handle:
    """Start the service in a background thread; ``port=0`` picks a free port.

    ``engine_options``: keyword arguments of the :class:`LocalLambda` behind it (when no
    ``engine`` is given). ``idle_s``: stop after this many seconds without a request
    (``Handle.stopped`` is then set); None runs until stopped. ``isolated``: functions run
    from their zip and layers only (:class:`LambdaService`).
    """
    root = Path(root) if root is not None else wisefuse_home() / "lambda-service"
    lock = _take_root(root)
    try:
        server = _IdleServer((host, port), _Tracked)
    except OSError as err:
        lock.unlink()
        raise WiseFuseError(
            f"cannot listen on {host}:{port}: {err.strerror}",
            hint="another process uses the port: pick another --port, or 0 for a free one",
        ) from None
    try:
        engine = engine or LocalLambda(**(engine_options or {}))
    except (TypeError, ValueError) as err:
        server.server_close()
        lock.unlink()
        raise WiseFuseError(
            f"bad engine options {engine_options!r}: {err}",
            hint="pass keyword arguments of LocalLambda (concurrency_limit, keep_alive_s, ...)",
        ) from None
    server.service = LambdaService(root, region, engine, isolated=isolated)
    bound = server.server_address[1]
    url = f"http://{host}:{bound}"
    lock.write_text(json.dumps({"pid": os.getpid(), "url": url}))
    thread = threading.Thread(
        target=server.serve_forever, name="wisefuse-lambda-service", daemon=True
    )
    thread.start()
    handle = Handle(url, bound, server.service, server, thread, lock)
    if idle_s is not None:
        threading.Thread(
            target=_watch_idle, args=(handle, server, idle_s), name="wisefuse-idle", daemon=True
        ).start()
    return handle


@contextlib.contextmanager
def running(**kwargs: Any) -> Iterator[Handle]:
    handle = serve(**kwargs)
    try:
        yield handle
    finally:
        handle.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--root", default=None, help="default: $WISEFUSE_HOME/lambda-service")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument(
        "--idle-timeout", type=float, default=None, help="stop after this many idle seconds"
    )
    parser.add_argument(
        "--engine-options", default=None, help="JSON object of LocalLambda keyword arguments"
    )
    parser.add_argument(
        "--isolated", action="store_true", help="run functions from their zip and layers only"
    )
    args = parser.parse_args(argv)
    try:
        options = json.loads(args.engine_options) if args.engine_options else None
    except ValueError:
        raise SystemExit(f"Error: --engine-options is not JSON: {args.engine_options!r}") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        handle = serve(
            args.host,
            args.port,
            args.root,
            region=args.region,
            engine_options=options,
            idle_s=args.idle_timeout,
            isolated=args.isolated,
        )
    except WiseFuseError as err:
        hint = f"\nhint: {err.hint}" if err.hint else ""
        raise SystemExit(f"Error: {err}{hint}") from None
    wait_until_stopped(handle)


def wait_until_stopped(handle: Handle) -> None:
    """Serve in the foreground until Ctrl-C, SIGTERM (a service manager's stop) or the idle
    shutdown; the root is released whichever it is."""
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"Lambda API at {handle.url} (root {handle.service.root}); Ctrl-C stops", flush=True)
    try:
        handle.stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        handle.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
